import Foundation
import SigV4

/// One function the gateway serves: the worker command and its limits.
public struct FunctionConfiguration: Sendable, Hashable {
    /// The Lambda function name (`[A-Za-z0-9_-]{1,64}`).
    public var name: String
    /// Executable and arguments. A relative executable path containing '/' is resolved against the
    /// configuration's base directory; a bare name is looked up in `PATH` when the worker starts.
    public var command: [String]
    /// Added to the worker's environment (after the inherited one, before the Lambda variables).
    public var environment: [String: String]
    /// Per-invocation timeout. Default 3 s, like Lambda.
    public var timeout: Duration
    /// Number of worker processes. Default 1.
    public var concurrency: Int
    /// Informational (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`), in MB. Default 128.
    public var memoryMB: Int
    /// Largest request payload; larger ones are refused with 413. Default 6 MB (6 291 456 bytes).
    public var maxPayloadBytes: Int
    /// Largest response a worker may post; larger ones fail the invocation with Function.ResponseSizeTooLarge.
    /// Default 6 MB.
    public var maxResponseBytes: Int
    /// Invocations that may wait for a free worker before new ones get 429. Default 1000.
    public var maxQueued: Int
    /// Exported as `_HANDLER` when set.
    public var handler: String?
    /// The worker's working directory and `LAMBDA_TASK_ROOT`. Default: the configuration's base directory.
    public var workingDirectory: String
    /// How asynchronous invocations (events, `Event` invokes) are retried and when they are dead-lettered.
    public var retry: RetryPolicy
    /// The workers' scheduling priority, as `nice` (0-19; higher yields the CPU to everything else). Default 0.
    /// On one machine, transcode workers at 10 that use every core leave the store, the gateway and the API
    /// answering at full speed, and take the CPU they leave idle.
    public var nice: Int
    /// Runs the workers under SCHED_IDLE: only on CPU time no other task wants. Default false. Stronger than
    /// `nice: 19` on Linux 6.6+ (EEVDF): there a nice-19 thread still runs out its slice before a woken task,
    /// and a pipeline of threads that wake each other per frame waits that much at every hand-off. Measured
    /// here (6.18, 2 cores) with two whole-ladder encodes in the background: a 2 s four-rung encode took
    /// 4.4–6.1 s against nice-19 encodes and 1.4–1.8 s against SCHED_IDLE ones (1.3–1.5 s alone).
    public var idle: Bool

    public static let defaultTimeout: Duration = .seconds(3)
    public static let defaultMemoryMB = 128
    public static let defaultMaxPayloadBytes = 6_291_456
    public static let defaultMaxQueued = 1000

    public init(
        name: String, command: [String], environment: [String: String] = [:],
        timeout: Duration = FunctionConfiguration.defaultTimeout, concurrency: Int = 1,
        memoryMB: Int = FunctionConfiguration.defaultMemoryMB,
        maxPayloadBytes: Int = FunctionConfiguration.defaultMaxPayloadBytes,
        maxResponseBytes: Int = FunctionConfiguration.defaultMaxPayloadBytes,
        maxQueued: Int = FunctionConfiguration.defaultMaxQueued, handler: String? = nil,
        workingDirectory: String = FileManager.default.currentDirectoryPath, retry: RetryPolicy = RetryPolicy(),
        nice: Int = 0, idle: Bool = false
    ) {
        self.retry = retry
        self.nice = nice
        self.idle = idle
        self.name = name
        self.command = command
        self.environment = environment
        self.timeout = timeout
        self.concurrency = concurrency
        self.memoryMB = memoryMB
        self.maxPayloadBytes = maxPayloadBytes
        self.maxResponseBytes = maxResponseBytes
        self.maxQueued = maxQueued
        self.handler = handler
        self.workingDirectory = workingDirectory
    }

    /// Timeout in whole seconds as Lambda reports it (rounded up, at least 1).
    var timeoutSeconds: Int { max(1, Int((timeout.seconds).rounded(.up))) }

    /// Checks the values a YAML file cannot type-check, naming the field.
    func validate() throws(GatewayError) {
        let prefix = "functions.\(name)"
        guard FunctionConfiguration.isValidName(name) else {
            throw .configuration(prefix, "invalid function name (expected 1-64 of A-Z a-z 0-9 - _)", function: name)
        }
        guard let executable = command.first, !executable.isEmpty else {
            throw .configuration("\(prefix).command", "must name an executable", function: name)
        }
        guard timeout > .zero else {
            throw .configuration("\(prefix).timeout", "must be a positive number of seconds", function: name)
        }
        guard (1...1024).contains(concurrency) else {
            throw .configuration("\(prefix).concurrency", "must be between 1 and 1024", function: name)
        }
        guard memoryMB >= 1 else { throw .configuration("\(prefix).memory", "must be at least 1 (MB)", function: name) }
        guard maxPayloadBytes >= 1 else {
            throw .configuration("\(prefix).maxPayloadBytes", "must be at least 1", function: name)
        }
        guard maxResponseBytes >= 1 else {
            throw .configuration("\(prefix).maxResponseBytes", "must be at least 1", function: name)
        }
        guard maxQueued >= 0 else {
            throw .configuration("\(prefix).maxQueued", "must not be negative", function: name)
        }
        guard (0...19).contains(nice) else {
            throw .configuration("\(prefix).nice", "must be between 0 and 19", function: name)
        }
        try retry.validate(path: "\(prefix).retry", function: name)
    }

    static func isValidName(_ name: String) -> Bool {
        let utf8 = name.utf8
        return (1...64).contains(utf8.count)
            && utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D
                    || c == 0x5F
            }
    }
}

/// Everything the gateway needs, read once at start-up (see `load(yaml:baseDirectory:environment:)`).
public struct GatewayConfiguration: Sendable {
    /// The functions, sorted by name.
    public var functions: [FunctionConfiguration]
    /// Region of ARNs, of SigV4 verification and of the workers' `AWS_REGION`. Default us-east-1.
    public var region: String
    /// Account id shown in ARNs. Default 000000000000.
    public var accountId: String
    /// Address of the public Invoke API server. Default 127.0.0.1.
    public var host: String
    /// Port of the public Invoke API server (0 picks a free one). Default 9001.
    public var port: Int
    /// Credentials accepted on the Invoke API (SigV4, service `lambda`). Never logged.
    public var credentials: [Credentials]
    /// Allowed difference between a request's signing time and now. Default 15 minutes.
    public var allowedClockSkew: TimeInterval
    /// Environment workers inherit, minus secrets (see `secretVariablePatterns`). Read by the composition root.
    public var inheritedEnvironment: [String: String]
    /// Inherited variables whose upper-cased name contains one of these are not passed to workers.
    public var secretVariablePatterns: [String]
    /// First restart delay after a failed start; doubles per consecutive failure. Default 50 ms.
    public var restartBackoffInitial: Duration
    /// Longest restart delay. Default 10 s.
    public var restartBackoffMax: Duration
    /// A worker that lived this long (or served an invocation) resets its backoff. Default 10 s.
    public var healthyUptime: Duration
    /// Consecutive init failures after which a function is marked failing. Default 3.
    public var maxConsecutiveInitFailures: Int
    /// How long shutdown waits after SIGTERM before it SIGKILLs workers. Default 5 s.
    public var shutdownGracePeriod: Duration
    /// Object-store events → functions.
    public var triggers: [TriggerRule]
    /// When set, the event webhook (`POST /events`) requires `Authorization: Bearer <token>`. Never logged.
    public var eventToken: String?
    /// The durable queue of asynchronous invocations.
    public var queue: QueueConfiguration

    public init(
        functions: [FunctionConfiguration], region: String = "us-east-1", accountId: String = "000000000000",
        host: String = "127.0.0.1", port: Int = 9001, credentials: [Credentials] = [],
        allowedClockSkew: TimeInterval = 900, inheritedEnvironment: [String: String] = [:],
        secretVariablePatterns: [String] = GatewayConfiguration.defaultSecretVariablePatterns,
        restartBackoffInitial: Duration = .milliseconds(50), restartBackoffMax: Duration = .seconds(10),
        healthyUptime: Duration = .seconds(10), maxConsecutiveInitFailures: Int = 3,
        shutdownGracePeriod: Duration = .seconds(5), triggers: [TriggerRule] = [], eventToken: String? = nil,
        queue: QueueConfiguration = QueueConfiguration()
    ) {
        self.triggers = triggers
        self.eventToken = eventToken
        self.queue = queue
        self.functions = functions.sorted { $0.name < $1.name }
        self.region = region
        self.accountId = accountId
        self.host = host
        self.port = port
        self.credentials = credentials
        self.allowedClockSkew = allowedClockSkew
        self.inheritedEnvironment = inheritedEnvironment
        self.secretVariablePatterns = secretVariablePatterns
        self.restartBackoffInitial = restartBackoffInitial
        self.restartBackoffMax = restartBackoffMax
        self.healthyUptime = healthyUptime
        self.maxConsecutiveInitFailures = maxConsecutiveInitFailures
        self.shutdownGracePeriod = shutdownGracePeriod
    }

    public static let defaultSecretVariablePatterns = [
        "SECRET", "PASSWORD", "TOKEN", "CREDENTIAL", "PRIVATE_KEY", "AWS_ACCESS_KEY_ID", "CINESCALE_ACCESS_KEY",
    ]

    /// Parses a gateway file:
    ///
    /// ```yaml
    /// region: us-east-1          # optional
    /// functions:
    ///   echo:
    ///     command: [".build/debug/hello", "echo"]
    ///     environment: {LOG_LEVEL: info, AWS_SECRET_ACCESS_KEY: "${AWS_SECRET_ACCESS_KEY}"}  # ${X}: the gateway's X
    ///     timeout: 3             # seconds (default 3)
    ///     concurrency: 2         # worker processes (default 1)
    ///     memory: 128            # MB, informational
    ///     maxPayloadBytes: 6291456
    ///     maxResponseBytes: 6291456
    ///     maxQueued: 1000
    ///     handler: app.handler   # optional, exported as _HANDLER
    ///     workingDirectory: .    # optional, relative to baseDirectory
    ///     retry:                 # asynchronous invocations (events, Event invokes)
    ///       maxAttempts: 3       # attempts in all (default 3, as Lambda: 1 + 2 retries)
    ///       backoff: 1           # seconds before the first retry, doubled per attempt, with jitter
    ///       maxBackoff: 300      # seconds
    ///       maxEventAge: 21600   # seconds; older events are dead-lettered
    /// triggers:                  # object-store events → functions
    ///   - function: echo
    ///     bucket: ingest
    ///     events: ["s3:ObjectCreated:*"]   # default; `s3:` prefix optional, `*` matches the rest
    ///     prefix: uploads/
    ///     suffix: .mp4
    /// events:
    ///   token: secret            # webhook bearer token (or the command's --event-token)
    /// queue:
    ///   path: data/queue.sqlite  # relative to baseDirectory
    ///   # or, shared by several gateways:
    ///   postgres: postgres://cinescale:${PGPASSWORD}@db:5432/cinescale?sslmode=require  # ${X}: the gateway's X
    ///   lease: 10                # seconds a claimed attempt stays leased without renewal
    ///   maxConnections: 8
    ///   maxPending: 100000       # pending invocations before events get 503 and Event invokes 429
    ///   retention: 259200        # seconds finished invocations are kept (and deduplicated)
    /// sources:                   # event sources polled by the gateway (besides the webhook)
    ///   sqs:                     # S3 event 2.1 records, bare or in an SNS envelope; s3:TestEvent skipped
    ///     - queueUrl: https://sqs.eu-west-1.amazonaws.com/123456789012/uploads
    ///       region: eu-west-1    # default: the queue URL's (sqs.<region>.amazonaws.com), else `region`
    ///       endpoint: http://127.0.0.1:4566   # optional; default: the queue URL's scheme and host
    ///       accessKeyId: ${AWS_ACCESS_KEY_ID}  # optional, like secretAccessKey and sessionToken; default:
    ///       secretAccessKey: ${AWS_SECRET_ACCESS_KEY}  # the gateway's AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    ///       sessionToken: ${AWS_SESSION_TOKEN}          # AWS_SESSION_TOKEN
    ///       waitTimeSeconds: 20  # long poll, 0-20 (default 20)
    ///       visibilityTimeout: 30  # seconds; extended while the message's invocations run (default 30)
    ///       maxInFlight: 100     # messages held until their invocations finish (default 100)
    ///   poll:                    # buckets listed for new/changed objects (stores without usable notifications)
    ///     - endpoint: http://127.0.0.1:3900   # the S3 endpoint (${X} anywhere: the gateway's X)
    ///       bucket: ingest
    ///       prefix: uploads/     # optional; default: the whole bucket
    ///       interval: 5s         # between scans: 500ms, 5s, 2m, or a number of seconds (default 5s)
    ///       accessKey: ${S3_ACCESS_KEY}  # default: the gateway's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    ///       secretKey: ${S3_SECRET_KEY}
    ///       region: garage       # default: `region`
    ///       pathStyle: true      # default true (false: virtual-hosted-style requests)
    ///       startFrom: beginning # objects already there at the first scan: beginning (events) or now (none)
    /// ```
    ///
    /// A message is deleted once every invocation made from it has succeeded or been dead-lettered; one
    /// whose body is not an S3 event is logged and left to the queue's redrive policy.
    ///
    /// Relative paths are resolved against `baseDirectory`. `environment` is what workers inherit (secrets
    /// removed). Errors name the function and the field (`functions.echo.timeout: ...`). The event sources'
    /// section (`sources:`) is read from the same file by their own configuration (target EventSources).
    public static func load(
        yaml: String, baseDirectory: String, environment: [String: String] = [:]
    ) throws(GatewayError) -> GatewayConfiguration {
        try ConfigurationFile(yaml: yaml, baseDirectory: baseDirectory, environment: environment)
            .decode(GatewayConfiguration.self)
    }

    /// Validates every function (for configurations built in code).
    public func validate() throws(GatewayError) {
        var seen: Set<String> = []
        for function in functions {
            try function.validate()
            guard seen.insert(function.name).inserted else {
                throw .configuration("functions.\(function.name)", "defined twice", function: function.name)
            }
        }
        try validateTriggers()
        try queue.validate()
    }

    /// Every trigger names a configured function.
    func validateTriggers() throws(GatewayError) {
        let names = Set(functions.map(\.name))
        for (index, trigger) in triggers.enumerated() {
            try trigger.validate(path: "triggers[\(index)]")
            guard names.contains(trigger.function) else {
                throw .configuration("triggers[\(index)].function", "no function named '\(trigger.function)'")
            }
        }
    }

    func function(named name: String) -> FunctionConfiguration? { functions.first { $0.name == name } }

    func arn(of function: String) -> String { "arn:aws:lambda:\(region):\(accountId):function:\(function)" }
}

// MARK: Decoding the gateway file

extension GatewayConfiguration: ConfigurationSection {
    /// A function's environment passes the gateway's variables on by name (`${NAME}`, the whole value: how secrets,
    /// which workers never inherit, reach a function without being written in the file); the shared queue's URL
    /// takes them anywhere (its password), percent-encoded.
    public static let substitutions = [
        Substitution(["functions", .anyKey, "environment", .anyKey], .wholeValueOfVariable),
        Substitution(["queue", "postgres"], .anywhere(percentEncoded: true)),
    ]

    /// The file's top level, in its order; `sources` is the event sources' (decoded by their own section).
    public init(from decoder: any Decoder) throws {
        let context = decoder.configurationContext
        self.init(functions: [], inheritedEnvironment: context.environment)
        let file = try decoder.configurationFields(notAMapping: "expected a mapping with a 'functions' key")
        var functions: [FunctionConfiguration] = []
        for key in file.keys {
            switch key {
            case "functions":
                if try file.value(key).isNull { continue }
                let entries = try file.decoder(key).configurationFields(
                    notAMapping: "expected a mapping of function name to settings")
                for name in entries.keys { functions.append(try entries.decode(FunctionConfiguration.self, name)) }
            case "region":
                guard let region = try file.text(key), !region.isEmpty else {
                    throw file.error(key, "expected a region name")
                }
                self.region = region
            case "triggers":
                triggers = try file.decoder(key).configurationItems(
                    notAList: "expected a list of {function, bucket, events, prefix, suffix}"
                ).map { item in try TriggerRule(from: item) }
            case "events":
                let fields = try file.decoder(key).configurationFields(notAMapping: "expected a mapping")
                for field in fields.keys {
                    guard field == "token" else { throw fields.error(field, "unknown field (expected token)") }
                    guard let token = try fields.text(field), !token.isEmpty else {
                        throw fields.error(field, "expected a non-empty string")
                    }
                    eventToken = token
                }
            case "queue":
                queue = try file.decode(QueueConfiguration.self, key)
            case "sources":
                continue  // the event sources' section
            default:
                throw file.error(key, "unknown field (expected functions, region, triggers, events, queue or sources)")
            }
        }
        var seen: Set<String> = []
        for function in functions where !seen.insert(function.name).inserted {
            throw GatewayError.configuration("functions.\(function.name)", "defined twice", function: function.name)
        }
        self.functions = functions.sorted { $0.name < $1.name }
        try validateTriggers()
    }
}

extension FunctionConfiguration: Decodable {
    /// `functions.<name>`: the name is the key, relative paths are the file's base directory's.
    public init(from decoder: any Decoder) throws {
        let context = decoder.configurationContext
        let name = decoder.codingPath.last?.stringValue ?? ""
        let prefix = decoder.configurationPath
        guard FunctionConfiguration.isValidName(name) else {
            throw GatewayError.configuration(
                prefix, "invalid function name (expected 1-64 of A-Z a-z 0-9 - _)", function: name)
        }
        let fields = try decoder.configurationFields(notAMapping: "expected a mapping of settings", function: name)
        self.init(name: name, command: [], workingDirectory: context.baseDirectory)
        var sawCommand = false
        for field in fields.keys {
            let value = try fields.value(field)
            func fail(_ message: String) -> GatewayError { fields.error(field, message) }
            func integer(min: Int) throws(GatewayError) -> Int {
                guard let text = value.text, let n = Int(text.replacingOccurrences(of: "_", with: "")), n >= min else {
                    throw fail("expected an integer ≥ \(min), got \(value)")
                }
                return n
            }
            switch field {
            case "command":
                sawCommand = true
                switch value {
                case .list:
                    let items = try fields.decoder(field).configurationItems(notAList: "expected a list of strings")
                    command = try items.map { item in
                        guard let text = try ConfigurationValue(from: item).text else {
                            throw fail("expected a list of strings")
                        }
                        return text
                    }
                case .scalar(let text):
                    command = [text]
                case .mapping:
                    throw fail("expected a list: [executable, arguments...]")
                }
                guard let executable = command.first, !executable.isEmpty else { throw fail("must name an executable") }
            case "environment":
                let variables = try fields.decoder(field).configurationFields(
                    notAMapping: "expected a mapping of NAME: value", function: name)
                for variable in variables.keys {
                    guard !variable.isEmpty, !variable.contains("="), !variable.utf8.contains(0) else {
                        throw fail("invalid variable name '\(variable)'")
                    }
                    // `${NAME}` was replaced by the gateway's NAME before decoding (see `substitutions`).
                    guard let text = try variables.text(variable) else {
                        throw fail("the value of \(variable) must be a scalar")
                    }
                    environment[variable] = text
                }
            case "timeout":
                guard let text = value.text, let seconds = Double(text), seconds > 0, seconds <= 86_400 else {
                    throw fail("expected a positive number of seconds, got \(value)")
                }
                timeout = .milliseconds(Int64((seconds * 1000).rounded()))
            case "concurrency": concurrency = try integer(min: 1)
            case "memory": memoryMB = try integer(min: 1)
            case "maxPayloadBytes": maxPayloadBytes = try integer(min: 1)
            case "maxResponseBytes": maxResponseBytes = try integer(min: 1)
            case "maxQueued": maxQueued = try integer(min: 0)
            case "handler":
                guard let text = value.text, !text.isEmpty else { throw fail("expected a string") }
                handler = text
            case "workingDirectory":
                guard let text = value.text, !text.isEmpty else { throw fail("expected a path") }
                workingDirectory = context.resolve(text)
            case "retry":
                retry = try fields.decode(RetryPolicy.self, field)
            case "nice": nice = try integer(min: 0)
            case "idle":
                guard let flag = value.text.flatMap({ Bool($0) }) else { throw fail("expected true or false") }
                idle = flag
            default:
                throw fail(
                    "unknown field (expected command, environment, timeout, concurrency, memory, maxPayloadBytes, maxResponseBytes, maxQueued, handler, workingDirectory, retry, nice or idle)"
                )
            }
        }
        guard sawCommand else { throw GatewayError.configuration("\(prefix).command", "is required", function: name) }
        if command[0].contains("/") { command[0] = context.resolve(command[0]) }
        try validate()
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}
