/// Status of one worker slot, for operators.
public struct WorkerStatus: Sendable, Hashable {
    public enum State: String, Sendable, Hashable {
        /// Process started, not yet waiting for work (initialising).
        case starting
        /// Waiting in `/next`.
        case idle
        /// Running an invocation.
        case busy
        /// Waiting to be restarted.
        case backoff
        /// Not running (before start or after shutdown).
        case stopped
    }

    public var index: Int
    public var pid: Int32?
    /// Port of this slot's Runtime API listener on 127.0.0.1.
    public var runtimeAPIPort: Int?
    public var state: State
    /// Processes started after the first.
    public var restarts: Int
    /// Invocations handed to this slot.
    public var invocations: Int
    /// How the previous process ended ("exit status 1", "signal: killed").
    public var lastExit: String?
}

/// Status of one function, for operators.
public struct FunctionStatus: Sendable, Hashable {
    public enum State: String, Sendable, Hashable {
        /// Serving, or ready to.
        case active
        /// Workers keep failing to initialise; invocations fail fast.
        case failing
        /// Shut down.
        case stopped
    }

    public var name: String
    public var state: State
    public var queueDepth: Int
    public var inFlight: Int
    public var restarts: Int
    /// The latest init failure ("Runtime.ImportModuleError: Unable to import module ...").
    public var lastInitError: String?
    public var workers: [WorkerStatus]
}
