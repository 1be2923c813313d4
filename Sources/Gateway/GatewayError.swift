import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// An error of the gateway: configuration, invocation intake, authentication or process supervision.
///
/// Errors a Lambda client sees carry the Lambda error type (`x-amzn-ErrorType`) and HTTP status of their code;
/// ``InvokeAPIError`` writes them, ``OperatorAPIError`` writes them for the gateway's own routes.
public struct GatewayError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Value: Hashable, Sendable {
            case invalidConfiguration
            case functionNotFound
            case requestTooLarge
            case tooManyRequests
            case invalidRequestContent
            case invalidParameterValue
            case invalidSignature
            case unrecognizedClient
            case missingAuthenticationToken
            case shuttingDown
            case spawnFailed
            case serverFailed
        }

        fileprivate let value: Value
        fileprivate init(_ value: Value) { self.value = value }

        /// The configuration file is malformed or names an invalid value.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// No function of that name (404 ResourceNotFoundException).
        public static let functionNotFound = Code(.functionNotFound)
        /// The request payload is larger than the function allows (413 RequestEntityTooLargeException).
        public static let requestTooLarge = Code(.requestTooLarge)
        /// The function's queue of pending invocations is full (429 TooManyRequestsException).
        public static let tooManyRequests = Code(.tooManyRequests)
        /// The payload is not JSON (400 InvalidRequestContentException).
        public static let invalidRequestContent = Code(.invalidRequestContent)
        /// A parameter (invocation type, qualifier) is invalid (400 InvalidParameterValueException).
        public static let invalidParameterValue = Code(.invalidParameterValue)
        /// The SigV4 signature does not verify (403 InvalidSignatureException).
        public static let invalidSignature = Code(.invalidSignature)
        /// The access key is unknown (403 UnrecognizedClientException).
        public static let unrecognizedClient = Code(.unrecognizedClient)
        /// The request carries no authentication (403 MissingAuthenticationTokenException).
        public static let missingAuthenticationToken = Code(.missingAuthenticationToken)
        /// The gateway is shutting down and takes no more work (503 ServiceException).
        public static let shuttingDown = Code(.shuttingDown)
        /// A worker process could not be started (posix_spawn failed).
        public static let spawnFailed = Code(.spawnFailed)
        /// An HTTP server could not start or stopped unexpectedly.
        public static let serverFailed = Code(.serverFailed)

        /// The Lambda error type sent in `x-amzn-ErrorType`.
        public var lambdaErrorType: String {
            switch value {
            case .functionNotFound: "ResourceNotFoundException"
            case .requestTooLarge: "RequestEntityTooLargeException"
            case .tooManyRequests: "TooManyRequestsException"
            case .invalidRequestContent: "InvalidRequestContentException"
            case .invalidParameterValue: "InvalidParameterValueException"
            case .invalidSignature: "InvalidSignatureException"
            case .unrecognizedClient: "UnrecognizedClientException"
            case .missingAuthenticationToken: "MissingAuthenticationTokenException"
            case .invalidConfiguration, .shuttingDown, .spawnFailed, .serverFailed: "ServiceException"
            }
        }

        /// The HTTP status the Invoke API answers with.
        public var httpStatus: Int {
            switch value {
            case .functionNotFound: 404
            case .requestTooLarge: 413
            case .tooManyRequests: 429
            case .invalidRequestContent, .invalidParameterValue: 400
            case .invalidSignature, .unrecognizedClient, .missingAuthenticationToken: 403
            case .shuttingDown: 503
            case .invalidConfiguration, .spawnFailed, .serverFailed: 500
            }
        }

        /// A failure of the gateway's own rather than an answer to the request: a client is told only
        /// "internal error" and a request id; the whole error is logged under that id.
        var isServerFault: Bool {
            switch value {
            case .invalidConfiguration, .spawnFailed, .serverFailed: true
            default: false
            }
        }

        public var description: String {
            switch value {
            case .invalidConfiguration: "invalidConfiguration"
            case .spawnFailed: "spawnFailed"
            case .serverFailed: "serverFailed"
            default: lambdaErrorType
            }
        }
    }

    public let code: Code
    public let message: String
    /// The function concerned, when there is one.
    public var function: String?
    /// The lower-level error this one wraps (a YAML parser error, an errno), if any.
    public var underlying: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, function: String? = nil, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.function = function
        self.underlying = underlying
    }

    public var description: String {
        var text = "\(code): \(message)"
        if let underlying { text += " (\(underlying))" }
        return text
    }
}

extension GatewayError {
    static func configuration(_ path: String, _ message: String, function: String? = nil) -> GatewayError {
        GatewayError(.invalidConfiguration, "\(path): \(message)", function: function)
    }

    static func notFound(arn: String, function: String) -> GatewayError {
        GatewayError(.functionNotFound, "Function not found: \(arn)", function: function)
    }

    static func tooLarge(limit: Int, function: String?) -> GatewayError {
        GatewayError(
            .requestTooLarge, "Request must be smaller than \(limit) bytes for the InvokeFunction operation",
            function: function)
    }

    static func throttled(function: String) -> GatewayError {
        GatewayError(.tooManyRequests, "Rate Exceeded.", function: function)
    }

    static func stopping(function: String?) -> GatewayError {
        GatewayError(.shuttingDown, "The gateway is shutting down.", function: function)
    }
}

// MARK: - Error answers

/// An error answer of the Lambda Invoke API, and the one place that format is written, as Lambda writes it:
/// the status and `x-amzn-ErrorType` of the error's code, `{"Type":"User"|"Service","message":…}` (a throttle
/// adds `"Reason"` and `Retry-After: 1`), and `x-amzn-RequestId`. A failure of the gateway's own
/// (``GatewayError/Code/isServerFault``, or any error that is not a `GatewayError`) says only
/// `"internal error"` and its request id (`"requestId"`, and the header); ``ErrorAnswerMiddleware`` logs
/// the whole error under the same id. The Invoke API's routes throw `GatewayError`s; Hummingbird's router
/// renders this (``response(from:context:)``).
struct InvokeAPIError: HTTPResponseError, Sendable {
    let error: GatewayError
    /// Lambda sends one with every answer.
    let requestID: String

    init(_ error: GatewayError, requestID: String = LambdaFormat.requestID()) {
        self.error = error
        self.requestID = requestID
    }

    var status: HTTPResponse.Status { HTTPResponse.Status(code: error.code.httpStatus) }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers: HTTPFields = [
            .contentType: "application/json", InvokeAPI.requestIDName: requestID,
            InvokeAPI.errorTypeName: error.code.lambdaErrorType,
        ]
        var body = "{"
        if error.code == .tooManyRequests {
            body += #""Reason":"ReservedFunctionConcurrentInvocationLimitExceeded","#
            headers[.retryAfter] = "1"
        }
        body += status.code >= 500 ? #""Type":"Service","message":"# : #""Type":"User","message":"#
        if error.code.isServerFault {
            body += #""internal error","requestId":"# + LambdaFormat.quote(requestID)
        } else {
            body += LambdaFormat.quote(error.message)
        }
        body += "}"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}

extension InvokeAPIError {
    /// What a Lambda client is told of an error an Invoke API route threw: a `GatewayError` as its code says
    /// (an authentication refusal logged at notice), anything else a failure of the gateway's own, logged in
    /// full. (The routes read their bodies themselves, so Hummingbird throws no client error of its own here.)
    init(answering error: any Error, request: Request, logger: Logger) {
        if let answer = error as? InvokeAPIError {
            self = answer
            return
        }
        let gatewayError =
            error as? GatewayError ?? GatewayError(.serverFailed, "unexpected error", underlying: error)
        self.init(gatewayError)
        if gatewayError.code.isServerFault {
            logger.error(
                "invoke API request failed",
                metadata: [
                    "cinescale.request.id": .string(requestID), "cinescale.method": .string(request.method.rawValue),
                    "cinescale.path": .string(request.uri.path),
                    "cinescale.error": .string(String(reflecting: gatewayError)),
                ])
        } else if gatewayError.code == .invalidSignature || gatewayError.code == .unrecognizedClient {
            logger.notice(
                "invoke API request refused",
                metadata: [
                    "cinescale.request.id": .string(requestID), "cinescale.error": .string(gatewayError.description),
                ])
        }
    }
}

/// An error format of a group of routes: what it makes of anything they throw.
protocol RouteErrorAnswer: Error {
    init(answering error: any Error, request: Request, logger: Logger)
}

extension InvokeAPIError: RouteErrorAnswer {}
extension OperatorAPIError: RouteErrorAnswer {}

/// Wraps a group of routes: whatever they throw becomes an `Answer` (``InvokeAPIError`` for the Invoke API,
/// ``OperatorAPIError`` for the gateway's own routes). A group's middleware: the router it is mounted on serves
/// other APIs with their own error formats.
struct ErrorAnswerMiddleware<Context: RequestContext, Answer: RouteErrorAnswer>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch {
            throw Answer(answering: error, request: request, logger: logger)
        }
    }
}

/// An error answer of the gateway's own routes (the event webhook, the operator view of the queue), and the
/// one place that format is written: `{"error":{"code":…,"message":…}}`, the product API's format, with a
/// `requestId` (also `X-Request-Id`) for a failure of the gateway's own, whose log line carries the same id.
/// Routes throw it (or a `GatewayError`, a ``DependencyFailure``); ``ErrorAnswerMiddleware`` makes
/// anything else one.
struct OperatorAPIError: HTTPResponseError, Sendable {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    /// Set for failures of the gateway's own: the id its log line carries.
    var requestID: String?
    /// Seconds, for answers worth retrying.
    var retryAfter: Int?

    init(_ status: HTTPResponse.Status, _ code: String, _ message: String, retryAfter: Int? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    static let requestIDName = HTTPField.Name("X-Request-Id")!

    private struct Body: Encodable {
        struct Inner: Encodable {
            var code: String
            var message: String
            var requestId: String?
        }
        var error: Inner
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        if let requestID { headers[Self.requestIDName] = requestID }
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let body = try encoder.encode(Body(error: .init(code: code, message: message, requestId: requestID)))
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// A part the gateway's own routes depend on failed (the durable queue, the product API's event observer):
/// answered with the route's status, code and words and a request id; the part's own error is logged in
/// full under that id, never sent.
struct DependencyFailure: Error {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    var underlying: any Error
}

extension OperatorAPIError {
    /// What a client of the gateway's own routes is told of an error a route threw: an `OperatorAPIError` as
    /// it is; a `GatewayError` by its Lambda type and status (a refused signature, a full queue); a
    /// ``DependencyFailure`` in its own words; a client error Hummingbird raised keeps its status. Anything
    /// else is a failure of the gateway's own: 500 "internal error" and a request id, logged in full.
    init(answering error: any Error, request: Request, logger: Logger) {
        if let answer = error as? OperatorAPIError {
            self = answer
            return
        }
        if let error = error as? GatewayError, !error.code.isServerFault {
            self.init(HTTPResponse.Status(code: error.code.httpStatus), error.code.lambdaErrorType, error.message)
            if error.code == .tooManyRequests { retryAfter = 1 }
            return
        }
        if let error = error as? any HTTPResponseError, error.status.code < 500 {
            let phrase = error.status.reasonPhrase
            self.init(error.status, phrase.filter { !$0.isWhitespace }, "\(phrase).")
            return
        }
        let requestID = LambdaFormat.requestID()
        var cause: any Error = error
        if let failure = error as? DependencyFailure {
            self.init(failure.status, failure.code, failure.message)
            cause = failure.underlying
        } else {
            self.init(.internalServerError, "InternalError", "internal error")
        }
        self.requestID = requestID
        logger.error(
            "request failed",
            metadata: [
                "cinescale.request.id": .string(requestID), "cinescale.method": .string(request.method.rawValue),
                "cinescale.path": .string(request.uri.path), "cinescale.error": .string(String(reflecting: cause)),
            ])
    }
}
