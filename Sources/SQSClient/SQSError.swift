import Foundation

/// An error of an SQS request: an error the service answered (its AWS error code in `serviceCode`), or one
/// the client met on the way (transport, an answer it cannot read, an argument it cannot send).
public struct SQSError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Value: Hashable, Sendable {
            case service
            case transport
            case invalidResponse
            case invalidArgument
        }

        fileprivate let value: Value
        fileprivate init(_ value: Value) { self.value = value }

        /// SQS answered with an error (`QueueDoesNotExist`, `ReceiptHandleIsInvalid`, `AccessDenied`…).
        public static let service = Code(.service)
        /// The request did not get an answer: connection refused or reset, timeout, TLS.
        public static let transport = Code(.transport)
        /// The answer is not the JSON document the operation returns.
        public static let invalidResponse = Code(.invalidResponse)
        /// An argument cannot be sent (queue URL not http(s), value out of SQS's range).
        public static let invalidArgument = Code(.invalidArgument)

        public var description: String {
            switch value {
            case .service: "service"
            case .transport: "transport"
            case .invalidResponse: "invalidResponse"
            case .invalidArgument: "invalidArgument"
            }
        }
    }

    public let code: Code
    public let message: String
    /// The AWS error code without its namespace (`QueueDoesNotExist`, not `com.amazonaws.sqs#QueueDoesNotExist`).
    public let serviceCode: String?
    /// HTTP status of the answer, when there was one.
    public let statusCode: Int?
    public let requestID: String?
    /// The error this one was made from (an `HTTPClientError`, a `DecodingError`).
    public let underlying: (any Error)?

    public init(
        _ code: Code, _ message: String, serviceCode: String? = nil, statusCode: Int? = nil, requestID: String? = nil,
        underlying: (any Error)? = nil
    ) {
        self.code = code
        self.message = message
        self.serviceCode = serviceCode
        self.statusCode = statusCode
        self.requestID = requestID
        self.underlying = underlying
    }

    public var description: String {
        var s = "SQSError(\(code)"
        if let statusCode { s += " \(statusCode)" }
        if let serviceCode { s += " \(serviceCode)" }
        s += "): \(message)"
        if let requestID { s += " requestId=\(requestID)" }
        return s
    }

    /// Whether the same request may succeed later: transport failures, 5xx, throttling.
    public var isRetryable: Bool {
        switch code {
        case .transport: return true
        case .service:
            if let statusCode, statusCode >= 500 || statusCode == 429 { return true }
            switch serviceCode {
            case "ThrottlingException", "RequestThrottled", "ServiceUnavailable", "InternalFailure", "InternalError",
                "KmsThrottled":
                return true
            default: return false
            }
        default: return false
        }
    }

    /// The queue named by the URL does not exist (or is being deleted).
    public var isQueueDoesNotExist: Bool {
        serviceCode == "QueueDoesNotExist" || serviceCode == "AWS.SimpleQueueService.NonExistentQueue"
    }

    /// The receipt handle is unknown or no longer valid (the message was deleted, or received again since).
    public var isReceiptHandleInvalid: Bool {
        serviceCode == "ReceiptHandleIsInvalid" || serviceCode == "InvalidParameterValue"
            || serviceCode == "MessageNotInflight" || serviceCode == "AWS.SimpleQueueService.MessageNotInflight"
    }
}
