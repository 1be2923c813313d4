import NIOCore

/// One invocation as delivered by `GET /2018-06-01/runtime/invocation/next`.
public struct Invocation: Sendable {
    /// `Lambda-Runtime-Aws-Request-Id`.
    public var requestID: String
    /// `Lambda-Runtime-Deadline-Ms`: milliseconds since the Unix epoch; `nil` if the header was absent.
    public var deadlineMilliseconds: Int64?
    /// `Lambda-Runtime-Invoked-Function-Arn` (empty if absent).
    public var invokedFunctionARN: String
    /// `Lambda-Runtime-Trace-Id`.
    public var traceID: String?
    /// `Lambda-Runtime-Client-Context`.
    public var clientContext: String?
    /// `Lambda-Runtime-Cognito-Identity`.
    public var cognitoIdentity: String?
    /// The event body.
    public var event: ByteBuffer

    public init(
        requestID: String, deadlineMilliseconds: Int64?, invokedFunctionARN: String = "",
        traceID: String? = nil, clientContext: String? = nil, cognitoIdentity: String? = nil, event: ByteBuffer
    ) {
        self.requestID = requestID
        self.deadlineMilliseconds = deadlineMilliseconds
        self.invokedFunctionARN = invokedFunctionARN
        self.traceID = traceID
        self.clientContext = clientContext
        self.cognitoIdentity = cognitoIdentity
        self.event = event
    }
}

/// The Runtime API as the run loop sees it. ``RuntimeAPIHTTPClient`` speaks it over HTTP/1.1; tests may
/// script it in memory. Calls are made one at a time, from one task.
public protocol RuntimeAPIClient {
    /// Long-polls for the next invocation; throws when the API cannot be reached or misbehaves.
    func nextInvocation() async throws -> Invocation
    /// Posts the handler's response for `requestID`.
    func reportResponse(requestID: String, body: ByteBuffer) async throws
    /// Posts a handler failure for `requestID` (`Lambda-Runtime-Function-Error-Type: Unhandled`).
    func reportError(requestID: String, error: ErrorReport) async throws
    /// Posts a failure to create the handler (`Lambda-Runtime-Function-Error-Type: Runtime.InitError`).
    func reportInitError(_ error: ErrorReport) async throws
    /// Posts the outcome of `requestID`, calls `posted` once the post is answered and then, when `thenNext` is
    /// true and `posted` returned true, long-polls for the next invocation. A client may send `GET …/next` in
    /// the same write as the post when the server says it answers pipelined requests.
    func post(_ outcome: InvocationOutcome, requestID: String, thenNext: Bool, posted: () -> Bool) async throws
        -> Invocation?
}

/// What a handler made of an invocation.
public enum InvocationOutcome: Sendable {
    case response(ByteBuffer)
    case error(ErrorReport)
}

extension RuntimeAPIClient {
    /// One request after the other.
    public func post(_ outcome: InvocationOutcome, requestID: String, thenNext: Bool, posted: () -> Bool)
        async throws -> Invocation?
    {
        switch outcome {
        case .response(let body): try await reportResponse(requestID: requestID, body: body)
        case .error(let report): try await reportError(requestID: requestID, error: report)
        }
        guard posted(), thenNext else { return nil }
        return try await nextInvocation()
    }
}
