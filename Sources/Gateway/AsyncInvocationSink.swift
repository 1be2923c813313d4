import Foundation
import Logging
import NIOCore

/// An `Event` (asynchronous) invocation accepted by the Invoke API.
public struct AsyncInvocation: Sendable {
    public var requestID: String
    public var function: String
    /// Already validated: within the function's size limit and JSON.
    public var payload: ByteBuffer
    public var receivedAt: Date

    public init(requestID: String, function: String, payload: ByteBuffer, receivedAt: Date) {
        self.requestID = requestID
        self.function = function
        self.payload = payload
        self.receivedAt = receivedAt
    }
}

/// Where the Invoke API puts `Event` invocations. `enqueue` returns once the invocation is accepted (the API
/// then answers 202); a `GatewayError` is answered as the Lambda error of its code (429 when full).
public protocol AsyncInvocationSink: Sendable {
    func enqueue(_ invocation: AsyncInvocation) async throws(GatewayError)
}

/// Fire-and-forget into the function's in-memory queue: nothing survives a restart, no retries. Outcomes
/// are logged.
public struct InMemoryAsyncInvocationSink: AsyncInvocationSink {
    let invoker: any FunctionInvoker
    let logger: Logger

    public init(invoker: any FunctionInvoker, logger: Logger) {
        self.invoker = invoker
        self.logger = logger
    }

    public func enqueue(_ invocation: AsyncInvocation) async throws(GatewayError) {
        let logger = self.logger
        let function = invocation.function
        try invoker.submit(function: function, payload: invocation.payload, requestID: invocation.requestID) {
            result in
            switch result {
            case .success(let r) where r.isError:
                logger.warning("async invocation failed", metadata: [
                    "cinescale.function": .string(function), "cinescale.request.id": .string(r.requestID),
                    "cinescale.error.type": .string(r.errorType ?? "Unhandled"),
                ])
            case .success(let r):
                logger.debug("async invocation succeeded", metadata: [
                    "cinescale.function": .string(function), "cinescale.request.id": .string(r.requestID),
                ])
            case .failure(let error):
                logger.warning("async invocation dropped", metadata: [
                    "cinescale.function": .string(function), "cinescale.request.id": .string(invocation.requestID),
                    "cinescale.error": .string(error.description),
                ])
            }
        }
    }
}
