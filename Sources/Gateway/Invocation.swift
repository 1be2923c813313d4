import NIOCore

/// The outcome of an invocation that reached the function (or failed in its runtime).
public struct InvocationResult: Sendable {
    /// The request id the function saw (`context.aws_request_id`).
    public var requestID: String
    /// The function's response, or the error document when `functionError` is set.
    public var payload: ByteBuffer
    /// "Unhandled" when the function (or its runtime) failed, as in `X-Amz-Function-Error`; nil on success.
    public var functionError: String?
    /// The error's type ("Runtime.TimeoutError", the handler's exception type...) when known.
    public var errorType: String?

    public init(requestID: String, payload: ByteBuffer, functionError: String? = nil, errorType: String? = nil) {
        self.requestID = requestID
        self.payload = payload
        self.functionError = functionError
        self.errorType = errorType
    }

    public var isError: Bool { functionError != nil }

    static func failure(requestID: String, type: String, message: String) -> InvocationResult {
        InvocationResult(
            requestID: requestID,
            payload: ByteBuffer(string: LambdaFormat.errorBody(type: type, message: message, requestID: requestID)),
            functionError: "Unhandled", errorType: type)
    }
}

/// Runs invocations: what the async scheduler (events, `Event` invokes) and in-process callers use to reach the functions.
public protocol FunctionInvoker: Sendable {
    /// Invokes `function` and waits for its result. Throws for invocations that never reached the function:
    /// unknown function, payload too large or not JSON, queue full, shutting down.
    func invoke(function: String, payload: ByteBuffer, requestID: String?) async throws(GatewayError)
        -> InvocationResult

    /// Queues an invocation without waiting; `completion` runs once with its outcome (on an arbitrary thread;
    /// it must not block). Throws synchronously when the invocation cannot be queued.
    func submit(
        function: String, payload: ByteBuffer, requestID: String?,
        completion: @escaping @Sendable (Result<InvocationResult, GatewayError>) -> Void
    ) throws(GatewayError)
}

/// How a waiting caller is told the outcome.
enum Completion: Sendable {
    case continuation(UnsafeContinuation<Result<InvocationResult, GatewayError>, Never>)
    case callback(@Sendable (Result<InvocationResult, GatewayError>) -> Void)

    @inline(__always)
    func complete(_ result: Result<InvocationResult, GatewayError>) {
        switch self {
        case .continuation(let c): c.resume(returning: result)
        case .callback(let f): f(result)
        }
    }
}

/// What a worker's `/next` receives.
struct Work: Sendable {
    var requestID: String
    var payload: ByteBuffer
    var deadlineMs: Int64
}
