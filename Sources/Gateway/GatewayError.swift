/// An error of the gateway: configuration, invocation intake, authentication or process supervision.
///
/// Errors a Lambda client sees carry the Lambda error type (`x-amzn-ErrorType`) and HTTP status of their code.
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
