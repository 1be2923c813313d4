import Foundation
import Logging

/// What a handler knows about the invocation it is serving.
public struct FunctionContext: Sendable {
    /// `Lambda-Runtime-Aws-Request-Id`.
    public let requestID: String
    /// When the invocation times out, on the monotonic clock (from `Lambda-Runtime-Deadline-Ms`).
    public let deadline: ContinuousClock.Instant
    /// The deadline as sent: milliseconds since the Unix epoch.
    public let deadlineMilliseconds: Int64
    /// `Lambda-Runtime-Invoked-Function-Arn`.
    public let invokedFunctionARN: String
    /// `AWS_LAMBDA_FUNCTION_NAME`, read at start-up.
    public let functionName: String
    /// `AWS_LAMBDA_FUNCTION_VERSION`, read at start-up.
    public let functionVersion: String
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` in MB, if set.
    public let memoryLimitMB: Int?
    /// `Lambda-Runtime-Trace-Id` (what AWS runtimes expose as `_X_AMZN_TRACE_ID`; the process environment
    /// is never modified).
    public let traceID: String?
    /// `Lambda-Runtime-Client-Context` (JSON, from mobile SDK invocations), if present.
    public let clientContext: String?
    /// `Lambda-Runtime-Cognito-Identity` (JSON), if present.
    public let cognitoIdentity: String?
    /// A logger whose metadata carries `cinescale.request.id`.
    public var logger: Logger

    public init(
        requestID: String,
        deadline: ContinuousClock.Instant,
        deadlineMilliseconds: Int64,
        invokedFunctionARN: String,
        functionName: String,
        functionVersion: String = "$LATEST",
        memoryLimitMB: Int? = nil,
        traceID: String? = nil,
        clientContext: String? = nil,
        cognitoIdentity: String? = nil,
        logger: Logger
    ) {
        self.requestID = requestID
        self.deadline = deadline
        self.deadlineMilliseconds = deadlineMilliseconds
        self.invokedFunctionARN = invokedFunctionARN
        self.functionName = functionName
        self.functionVersion = functionVersion
        self.memoryLimitMB = memoryLimitMB
        self.traceID = traceID
        self.clientContext = clientContext
        self.cognitoIdentity = cognitoIdentity
        var logger = logger
        logger[metadataKey: "cinescale.request.id"] = .string(requestID)
        self.logger = logger
    }

    /// Time left before the deadline (negative once it has passed).
    public var remainingTime: Duration {
        deadline - .now
    }

    /// The deadline as a wall-clock date.
    public var deadlineDate: Date {
        Date(timeIntervalSince1970: Double(deadlineMilliseconds) / 1000)
    }

    /// Maps an epoch-milliseconds deadline onto the monotonic clock, given the same moment on both clocks.
    public static func deadline(
        epochMilliseconds: Int64, nowEpochMilliseconds: Int64, now: ContinuousClock.Instant
    ) -> ContinuousClock.Instant {
        now.advanced(by: .milliseconds(epochMilliseconds - nowEpochMilliseconds))
    }
}
