import Foundation
import Logging
import NIOCore

/// The functions' dispatchers behind one name lookup; what the Invoke API, the in-process API and the async
/// scheduler invoke through.
final class GatewayCore: FunctionInvoker {
    let configuration: GatewayConfiguration
    let dispatchers: [String: FunctionDispatcher]
    /// In configuration order (sorted by name).
    let ordered: [FunctionDispatcher]
    let logger: Logger
    let startedAt = Date()

    init(configuration: GatewayConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        var dispatchers: [String: FunctionDispatcher] = [:]
        var ordered: [FunctionDispatcher] = []
        for function in configuration.functions {
            let dispatcher = FunctionDispatcher(
                configuration: function, arn: configuration.arn(of: function.name),
                maxInitFailures: configuration.maxConsecutiveInitFailures, healthyUptime: configuration.healthyUptime,
                logger: logger)
            dispatchers[function.name] = dispatcher
            ordered.append(dispatcher)
        }
        self.dispatchers = dispatchers
        self.ordered = ordered
    }

    static let emptyPayload = ByteBuffer(string: "{}")

    /// The dispatcher of `function` after checking the payload: size, then JSON. An empty payload is `{}`.
    func prepare(function: String, payload: ByteBuffer) throws(GatewayError) -> (FunctionDispatcher, ByteBuffer) {
        guard let dispatcher = dispatchers[function] else {
            throw .notFound(arn: configuration.arn(of: function), function: function)
        }
        guard payload.readableBytes <= dispatcher.configuration.maxPayloadBytes else {
            throw .tooLarge(limit: dispatcher.configuration.maxPayloadBytes, function: function)
        }
        if payload.readableBytes == 0 { return (dispatcher, Self.emptyPayload) }
        do {
            try payload.withUnsafeReadableBytes { raw throws(JSONValidator.Failure) in try JSONValidator.validate(raw) }
        } catch {
            throw GatewayError(
                .invalidRequestContent, "Could not parse request body into json: \(error)", function: function)
        }
        return (dispatcher, payload)
    }

    func invoke(function: String, payload: ByteBuffer, requestID: String?) async throws(GatewayError)
        -> InvocationResult
    {
        let (dispatcher, payload) = try prepare(function: function, payload: payload)
        return try await dispatcher.invoke(requestID: requestID ?? LambdaFormat.requestID(), payload: payload).get()
    }

    func submit(
        function: String, payload: ByteBuffer, requestID: String?,
        completion: @escaping @Sendable (Result<InvocationResult, GatewayError>) -> Void
    ) throws(GatewayError) {
        let (dispatcher, payload) = try prepare(function: function, payload: payload)
        try dispatcher.submit(
            requestID: requestID ?? LambdaFormat.requestID(), payload: payload, completion: .callback(completion))
    }
}
