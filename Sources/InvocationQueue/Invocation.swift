import Foundation

/// One asynchronous invocation in the durable queue, with its history.
public struct QueuedInvocation: Sendable, Hashable, Codable {
    public enum State: String, Sendable, Hashable, Codable, CaseIterable {
        /// Waiting for a worker (first attempt, or re-driven).
        case queued
        /// An attempt is running.
        case running
        /// An attempt failed; the next one is scheduled at `nextAttemptAt`.
        case failed
        /// An attempt succeeded. Terminal.
        case succeeded
        /// Out of attempts or too old: the dead-letter queue. Terminal until re-driven.
        case dead
    }

    /// Also the request id the function sees; the same on every attempt (as Lambda does for retries).
    public var id: String
    public var function: String
    /// Where it came from: `invoke` (the Invoke API), `s3` (an object-store event), `redrive`.
    public var source: String
    /// Equal for two deliveries of the same change to the same function; `nil` when not deduplicated.
    public var dedupeKey: String?
    /// The event handed to the function.
    public var payload: Data
    public var state: State
    /// Attempts started so far (an attempt cut short by a gateway crash is not counted).
    public var attempts: Int
    public var maxAttempts: Int
    public var createdAt: Date
    /// Past this the invocation is dead-lettered instead of retried.
    public var expiresAt: Date
    public var nextAttemptAt: Date
    /// Start of the latest attempt.
    public var startedAt: Date?
    /// End of the latest attempt.
    public var finishedAt: Date?
    /// Duration of the latest attempt in milliseconds.
    public var durationMs: Double?
    /// The latest failure (`Runtime.TimeoutError`, the handler's error type...).
    public var errorType: String?
    public var errorMessage: String?

    public init(
        id: String, function: String, source: String, dedupeKey: String?, payload: Data, state: State = .queued,
        attempts: Int = 0, maxAttempts: Int, createdAt: Date, expiresAt: Date, nextAttemptAt: Date,
        startedAt: Date? = nil, finishedAt: Date? = nil, durationMs: Double? = nil, errorType: String? = nil,
        errorMessage: String? = nil
    ) {
        self.id = id
        self.function = function
        self.source = source
        self.dedupeKey = dedupeKey
        self.payload = payload
        self.state = state
        self.attempts = attempts
        self.maxAttempts = maxAttempts
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.nextAttemptAt = nextAttemptAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.durationMs = durationMs
        self.errorType = errorType
        self.errorMessage = errorMessage
    }

    /// Whether the dispatcher still has to run it.
    public var isPending: Bool { state == .queued || state == .failed || state == .running }
}

/// The outcome of one attempt, as recorded.
public enum AttemptOutcome: Sendable, Hashable {
    case succeeded
    /// Failed; retried at `retryAt`.
    case failed(errorType: String, message: String, retryAt: Date)
    /// Failed for the last time: dead-lettered.
    case dead(errorType: String, message: String)
    /// The attempt never reached the function (gateway shutting down, worker queue full): not counted,
    /// queued again for `retryAt`.
    case returned(retryAt: Date)
}

/// What `enqueue` did with one invocation.
public enum EnqueueResult: Sendable, Hashable {
    case inserted(QueuedInvocation)
    /// An invocation with the same dedupe key exists (the id of that one).
    case duplicate(existingID: String)
}

/// Filter for listings.
public struct InvocationFilter: Sendable, Hashable {
    public var states: Set<QueuedInvocation.State>
    public var function: String?
    /// At most this many, newest first. Default 100.
    public var limit: Int
    /// Only those created before this (paging: pass the last `createdAt` of the previous page).
    public var createdBefore: Date?

    public init(
        states: Set<QueuedInvocation.State> = [], function: String? = nil, limit: Int = 100, createdBefore: Date? = nil
    ) {
        self.states = states
        self.function = function
        self.limit = limit
        self.createdBefore = createdBefore
    }
}
