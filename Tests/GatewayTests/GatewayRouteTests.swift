import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import InvocationQueue
import NIOCore
import SigV4
import Synchronization
import Testing

@testable import Gateway

/// Every route of the gateway's public router in process (HummingbirdTesting's router client): the Invoke API
/// here, the event webhook, the operator view of the queue, `/metrics` and `/healthz` in OperatorRouteTests.swift,
/// with each answer they give, errors included — status, Lambda error type or code, message and headers. No
/// server, no worker process: the routes run over the gateway's core (its dispatchers, never started), an
/// in-memory queue and a fake scheduler and function runner (RouteFakes.swift). The wire with real clients and
/// real workers stays in InvokeAPITests, TriggerTests and the Python tests.
@Suite("Gateway routes in process")
struct GatewayRouteTests {
    static let credentials = Credentials(accessKeyId: "AKIDROUTETEST", secretAccessKey: "route/test+secret")
    static let token = "event-token"
    static let arnPrefix = "arn:aws:lambda:us-east-1:000000000000:function:"

    /// What a route answered.
    struct Answer {
        var status: HTTPResponse.Status
        var headers: HTTPFields
        var body: ByteBuffer
        var text: String { String(buffer: body) }
        var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
        }
        func header(_ name: String) -> String? { HTTPField.Name(name).flatMap { headers[$0] } }
        /// The operator routes' `{"error": {…}}`.
        var error: [String: Any] { json["error"] as? [String: Any] ?? [:] }
        var code: String? { error["code"] as? String }
    }

    /// Sends requests, SigV4-signed (service `lambda`, host `localhost` as the router client sets it) unless
    /// `credentials` is nil.
    struct Caller: Sendable {
        let client: any TestClientProtocol

        func callAsFunction(
            _ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil, headers: HTTPFields = [:],
            credentials: Credentials? = GatewayRouteTests.credentials, date: Date = Date(),
            signing signed: String? = nil
        ) async throws -> Answer {
            var headers = headers
            if let credentials {
                let parts = uri.split(separator: "?", maxSplits: 1).map(String.init)
                let query = (parts.count > 1 ? parts[1] : "").split(separator: "&").map {
                    pair -> (name: String, value: String) in
                    let kv = pair.split(separator: "=", maxSplits: 1).map {
                        String($0).removingPercentEncoding ?? String($0)
                    }
                    return (name: kv[0], value: kv.count > 1 ? kv[1] : "")
                }
                let signer = SigV4Signer(credentials: credentials, region: "us-east-1", service: "lambda")
                let toSign = headers.map { (name: $0.name.canonicalName, value: $0.value) }
                for (name, value) in signer.signedHeaders(
                    for: SigningRequest(
                        method: method.rawValue, path: parts[0], query: query,
                        headers: toSign + [(name: "host", value: "localhost")]),
                    payload: .sha256(Array((signed ?? body ?? "").utf8)), date: date)
                {
                    headers.append(HTTPField(name: HTTPField.Name(name)!, value: value))
                }
            }
            let response = try await client.executeRequest(
                uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
            return Answer(status: response.status, headers: response.headers, body: response.body)
        }

        /// `POST /2015-03-31/functions/{name}/invocations`.
        func invoke(
            _ name: String, _ payload: String?, type: String? = nil,
            credentials: Credentials? = GatewayRouteTests
                .credentials
        ) async throws -> Answer {
            var headers: HTTPFields = [.contentType: "application/json"]
            if let type { headers[InvokeAPI.invocationTypeName] = type }
            return try await self(
                .post, "/2015-03-31/functions/\(name)/invocations", payload, headers: headers, credentials: credentials)
        }
    }

    /// The parts the routes were built over.
    final class Parts: Sendable {
        let core: GatewayCore
        let queue: InMemoryInvocationQueue
        let scheduler: FakeScheduler
        let logs: LogCapture
        let metrics: GatewayMetrics
        /// Bodies the event observer saw.
        let observed = Mutex<[String]>([])
        let observerFails = Atomic<Bool>(false)

        init(core: GatewayCore, queue: InMemoryInvocationQueue, maxPending: Int, logs: LogCapture) {
            self.core = core
            self.queue = queue
            self.scheduler = FakeScheduler(queue: queue, maxPending: maxPending)
            self.logs = logs
            self.metrics = GatewayMetrics(functions: core.ordered.map(\.name))
        }

        func dispatcher(_ name: String) -> FunctionDispatcher { core.dispatchers[name]! }
    }

    static func function(
        _ name: String, maxPayloadBytes: Int = FunctionConfiguration.defaultMaxPayloadBytes, maxQueued: Int = 1000
    ) -> FunctionConfiguration {
        var function = FunctionConfiguration(
            name: name, command: ["/bin/\(name)"], maxPayloadBytes: maxPayloadBytes, maxQueued: maxQueued)
        function.retry = RetryPolicy(maxAttempts: 2)
        return function
    }

    /// The routes over functions `echo` and `small` (payloads up to 100 bytes) unless `functions` says
    /// otherwise, a trigger from bucket `ingest` to `echo`, the event token, at most `maxPending` pending
    /// invocations; `invoker` runs `RequestResponse` invokes (default: a fake echoing the payload).
    static func withRoutes(
        functions: [FunctionConfiguration] = [function("echo"), function("small", maxPayloadBytes: 100)],
        maxPending: Int = 100,
        invoker: (@Sendable (GatewayCore) -> any FunctionInvoker)? = nil,
        _ body: @Sendable (Parts, Caller) async throws -> Void
    ) async throws {
        let configuration = GatewayConfiguration(
            functions: functions, port: 0, credentials: [credentials],
            triggers: [TriggerRule(function: "echo", bucket: "ingest")], eventToken: token)
        try configuration.validate()
        let logs = LogCapture()
        let core = GatewayCore(configuration: configuration, logger: logs.logger)
        let parts = Parts(core: core, queue: InMemoryInvocationQueue(), maxPending: maxPending, logs: logs)
        let routes = GatewayRoutes(
            core: core, invoker: invoker?(core) ?? FakeInvoker(core: core), scheduler: parts.scheduler,
            metrics: parts.metrics,
            eventObserver: { body in
                if parts.observerFails.load(ordering: .relaxed) {
                    throw InMemoryInvocationQueue.Failure()
                }
                parts.observed.withLock { $0.append(String(buffer: body)) }
            }, logger: logs.logger)
        let router = Router(context: BasicRequestContext.self)
        routes.addRoutes(to: router)
        try await Application(router: router).test(.router) { client in
            try await body(parts, Caller(client: client))
        }
    }

    // MARK: Expectations

    /// A Lambda error answer: status, `x-amzn-ErrorType`, `Type`, a request id header, and (when given) the
    /// exact message.
    static func expectLambdaError(
        _ answer: Answer, _ status: HTTPResponse.Status, _ type: String, message: String? = nil,
        _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(answer.status == status, comment, sourceLocation: sourceLocation)
        #expect(answer.header("x-amzn-ErrorType") == type, comment, sourceLocation: sourceLocation)
        #expect(answer.header("Content-Type") == "application/json", comment, sourceLocation: sourceLocation)
        #expect(
            answer.json["Type"] as? String == (status.code >= 500 ? "Service" : "User"), comment,
            sourceLocation: sourceLocation)
        #expect(answer.header("x-amzn-RequestId")?.count == 36, comment, sourceLocation: sourceLocation)
        let sent = answer.json["message"] as? String
        #expect(sent?.isEmpty == false, comment, sourceLocation: sourceLocation)
        if let message { #expect(sent == message, comment, sourceLocation: sourceLocation) }
    }

    /// A failure of the gateway's own: only "internal error" and a request id (body and header), nothing of
    /// the error itself; the error is logged in full under that id.
    static func expectInternal(
        _ answer: Answer, _ parts: Parts, logged detail: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        expectLambdaError(
            answer, .internalServerError, "ServiceException", message: "internal error",
            sourceLocation: sourceLocation)
        let id = answer.json["requestId"] as? String
        #expect(id != nil && id == answer.header("x-amzn-RequestId"), sourceLocation: sourceLocation)
        #expect(!answer.text.contains(detail), sourceLocation: sourceLocation)
        let logged = parts.logs.lines(requestID: id ?? "")
        #expect(
            logged.contains { $0.level == .error && $0.metadata["cinescale.error"]?.contains(detail) == true },
            "\(parts.logs.lines.map(\.message))", sourceLocation: sourceLocation)
    }

    /// An operator-route error answer: `{"error": {"code", "message"}}`, a request id only for 5xx failures.
    static func expectError(
        _ answer: Answer, _ status: HTTPResponse.Status, _ code: String, _ comment: Comment? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(answer.status == status, comment, sourceLocation: sourceLocation)
        #expect(answer.code == code, comment, sourceLocation: sourceLocation)
        #expect(answer.header("Content-Type") == "application/json", comment, sourceLocation: sourceLocation)
        #expect((answer.error["message"] as? String)?.isEmpty == false, comment, sourceLocation: sourceLocation)
        if status.code < 500 {
            #expect(answer.error["requestId"] == nil, comment, sourceLocation: sourceLocation)
            #expect(answer.header("X-Request-Id") == nil, comment, sourceLocation: sourceLocation)
        }
    }

    /// An operator-route failure of the gateway's own: a request id in body and header, the detail only logged.
    static func expectFault(
        _ answer: Answer, _ status: HTTPResponse.Status, _ code: String, _ parts: Parts, logged detail: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        expectError(answer, status, code, sourceLocation: sourceLocation)
        let id = answer.error["requestId"] as? String
        #expect(id != nil && id == answer.header("X-Request-Id"), sourceLocation: sourceLocation)
        #expect(!answer.text.contains(detail), sourceLocation: sourceLocation)
        #expect(
            parts.logs.lines(requestID: id ?? "").contains { $0.metadata["cinescale.error"]?.contains(detail) == true },
            sourceLocation: sourceLocation)
    }

    static let internalDetail = "/var/lib/cinescale/queue.sqlite"

    // MARK: Invoke: RequestResponse

    @Test func requestResponseAnswersWithTheFunctionsResult() async throws {
        try await Self.withRoutes { _, call in
            let reply = try await call.invoke("echo", #"{"hello":"world"}"#)
            #expect(reply.status == .ok && reply.text == #"{"hello":"world"}"#)
            #expect(reply.header("Content-Type") == "application/json")
            #expect(reply.header("X-Amz-Executed-Version") == "$LATEST")
            #expect(reply.header("X-Amz-Function-Error") == nil)
            #expect(reply.header("x-amzn-RequestId")?.isEmpty == false)
            // An empty payload is `{}`, as Lambda hands it.
            #expect(try await call.invoke("echo", nil).text == "{}")
            // The function by name, by name and qualifier, by partial and full ARN, percent-encoded as SDKs send it.
            for name in [
                "echo:$LATEST", "000000000000:function:echo", "\(Self.arnPrefix)echo", "\(Self.arnPrefix)echo:$LATEST",
                "arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Aecho",
            ] {
                let byName = try await call.invoke(name, #"{"n":1}"#)
                #expect(byName.status == .ok && byName.text == #"{"n":1}"#, "\(name)")
            }
            let qualified = try await call(
                .post, "/2015-03-31/functions/echo/invocations?Qualifier=$LATEST", #"{"q":1}"#)
            #expect(qualified.status == .ok && qualified.text == #"{"q":1}"#)
        }
    }

    @Test func aFunctionErrorIsA200WithTheErrorDocument() async throws {
        try await Self.withRoutes(invoker: { core in
            FakeInvoker(core: core) { _, _, id in
                .failure(requestID: id, type: "ValueError", message: "boom")
            }
        }) { _, call in
            let reply = try await call.invoke("echo", "{}")
            #expect(reply.status == .ok)
            #expect(reply.header("X-Amz-Function-Error") == "Unhandled")
            #expect(reply.json["errorType"] as? String == "ValueError")
            #expect(reply.json["errorMessage"] as? String == "boom")
            #expect(reply.json["requestId"] as? String == reply.header("x-amzn-RequestId"))
        }
    }

    @Test func aFullWorkerQueueIs429AndAStoppingGateway503() async throws {
        // The core's own dispatchers, never started: with no room in the queue a call is throttled at once;
        // once stopping, refused.
        try await Self.withRoutes(
            functions: [Self.function("echo", maxQueued: 0)], invoker: { $0 }
        ) { parts, call in
            let throttled = try await call.invoke("echo", "{}")
            Self.expectLambdaError(throttled, .tooManyRequests, "TooManyRequestsException", message: "Rate Exceeded.")
            #expect(throttled.json["Reason"] as? String == "ReservedFunctionConcurrentInvocationLimitExceeded")
            #expect(throttled.header("Retry-After") == "1")

            parts.dispatcher("echo").beginStop()
            let stopping = try await call.invoke("echo", "{}")
            Self.expectLambdaError(
                stopping, .serviceUnavailable, "ServiceException", message: "The gateway is shutting down.")
        }
    }

    @Test func aFailureOfTheGatewaysOwnSaysOnlyInternalError() async throws {
        try await Self.withRoutes(invoker: { core in
            FakeInvoker(
                core: core,
                failure: GatewayError(.serverFailed, "posix_spawn failed: \(Self.internalDetail) is not executable"))
        }) { parts, call in
            Self.expectInternal(try await call.invoke("echo", "{}"), parts, logged: Self.internalDetail)
        }
    }

    // MARK: Invoke: Event and DryRun

    @Test func eventIsCommittedToTheQueueBefore202() async throws {
        try await Self.withRoutes { parts, call in
            let reply = try await call.invoke("echo", #"{"async":true}"#, type: "Event")
            #expect(reply.status == .accepted && reply.body.readableBytes == 0)
            let id = try #require(reply.header("x-amzn-RequestId"))
            let queued = try #require(try await parts.queue.get(id: id))
            #expect(queued.function == "echo" && queued.source == "invoke" && queued.state == .queued)
            #expect(queued.maxAttempts == 2 && queued.dedupeKey == nil)
            #expect(String(decoding: queued.payload, as: UTF8.self) == #"{"async":true}"#)
            #expect(parts.scheduler.scheduled == [id])
            // An empty payload is queued as `{}`; an invalid one is refused before the queue.
            let empty = try await call.invoke("echo", nil, type: "Event")
            let emptyID = try #require(empty.header("x-amzn-RequestId"))
            #expect(try await parts.queue.get(id: emptyID)?.payload == Data("{}".utf8))
            Self.expectLambdaError(
                try await call.invoke("echo", "{", type: "Event"), .badRequest, "InvalidRequestContentException")
            #expect(parts.queue.all.count == 2)
        }
    }

    @Test func eventAtTheQueuesBoundIs429() async throws {
        try await Self.withRoutes(maxPending: 1) { parts, call in
            #expect(try await call.invoke("echo", "{}", type: "Event").status == .accepted)
            let refused = try await call.invoke("echo", "{}", type: "Event")
            Self.expectLambdaError(
                refused, .tooManyRequests, "TooManyRequestsException",
                message: "The invocation queue holds 1 pending invocations (limit 1); retry later.")
            #expect(refused.header("Retry-After") == "1")
            #expect(parts.queue.all.count == 1)
        }
    }

    @Test func eventTheQueueCannotCommitIsAnInternalError() async throws {
        try await Self.withRoutes { parts, call in
            parts.queue.failing = true
            Self.expectInternal(try await call.invoke("echo", "{}", type: "Event"), parts, logged: Self.internalDetail)
        }
    }

    @Test func dryRunIs204AndAnUnknownTypeIs400() async throws {
        try await Self.withRoutes { parts, call in
            let dry = try await call.invoke("echo", "{}", type: "DryRun")
            #expect(dry.status == .noContent && dry.header("x-amzn-RequestId") != nil)
            #expect(parts.queue.all.isEmpty)
            Self.expectLambdaError(
                try await call.invoke("echo", "{}", type: "Sometimes"), .badRequest, "InvalidParameterValueException",
                message:
                    "1 validation error detected: Value 'Sometimes' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
            )
        }
    }

    // MARK: Invoke: the request's errors

    @Test func anUnknownFunctionOrQualifierIs404() async throws {
        try await Self.withRoutes { _, call in
            Self.expectLambdaError(
                try await call.invoke("nope", "{}"), .notFound, "ResourceNotFoundException",
                message: "Function not found: \(Self.arnPrefix)nope")
            Self.expectLambdaError(
                try await call.invoke("\(Self.arnPrefix)nope", "{}", type: "Event"), .notFound,
                "ResourceNotFoundException", message: "Function not found: \(Self.arnPrefix)nope")
            Self.expectLambdaError(
                try await call.invoke("echo:7", "{}"), .notFound, "ResourceNotFoundException",
                message: "Function not found: \(Self.arnPrefix)echo:7")
            Self.expectLambdaError(
                try await call(.post, "/2015-03-31/functions/echo/invocations?Qualifier=prod", "{}"), .notFound,
                "ResourceNotFoundException", message: "Function not found: \(Self.arnPrefix)echo:prod")
        }
    }

    @Test func aPayloadOverTheFunctionsLimitIs413() async throws {
        try await Self.withRoutes { parts, call in
            let payload = #"{"data":""# + String(repeating: "x", count: 200) + #""}"#
            for type in ["RequestResponse", "Event"] {
                Self.expectLambdaError(
                    try await call.invoke("small", payload, type: type), .contentTooLarge,
                    "RequestEntityTooLargeException",
                    message: "Request must be smaller than 100 bytes for the InvokeFunction operation", "\(type)")
            }
            // An unknown function is held to the default limit before it is looked up.
            let huge = String(repeating: " ", count: FunctionConfiguration.defaultMaxPayloadBytes + 1)
            Self.expectLambdaError(
                try await call.invoke("nope", huge), .contentTooLarge, "RequestEntityTooLargeException")
            #expect(try await call.invoke("small", #"{"n":1}"#).status == .ok)
            #expect(parts.queue.all.isEmpty)
        }
    }

    @Test func aPayloadThatIsNotJSONIs400() async throws {
        try await Self.withRoutes { _, call in
            for payload in ["not json", #"{"a":}"#, #"{"a":1} trailing"#] {
                let reply = try await call.invoke("echo", payload)
                Self.expectLambdaError(reply, .badRequest, "InvalidRequestContentException", "\(payload)")
                #expect(
                    (reply.json["message"] as? String)?.hasPrefix("Could not parse request body into json: ") == true)
            }
        }
    }

    @Test func everyInvokeAPIRouteChecksTheSignature() async throws {
        try await Self.withRoutes { parts, call in
            let routes: [(HTTPRequest.Method, String, String?)] = [
                (.post, "/2015-03-31/functions/echo/invocations", "{}"),
                (.get, "/2015-03-31/functions/", nil),
                (.get, "/2015-03-31/functions/echo", nil),
            ]
            for (method, uri, body) in routes {
                let wrongSecret = Credentials(accessKeyId: Self.credentials.accessKeyId, secretAccessKey: "wrong")
                let bad = try await call(method, uri, body, credentials: wrongSecret)
                Self.expectLambdaError(bad, .forbidden, "InvalidSignatureException", "\(uri)")
                #expect((bad.json["message"] as? String)?.contains("signature") == true)
                Self.expectLambdaError(
                    try await call(
                        method, uri, body, credentials: Credentials(accessKeyId: "AKIDUNKNOWN", secretAccessKey: "x")),
                    .forbidden, "UnrecognizedClientException",
                    message: "The security token included in the request is invalid.", "\(uri)")
                Self.expectLambdaError(
                    try await call(method, uri, body, credentials: nil), .forbidden,
                    "MissingAuthenticationTokenException", message: "Missing Authentication Token", "\(uri)")
                Self.expectLambdaError(
                    try await call(method, uri, body, date: Date().addingTimeInterval(-3600)), .forbidden,
                    "InvalidSignatureException", "\(uri)")
            }
            // A body that is not the one signed.
            Self.expectLambdaError(
                try await call(.post, "/2015-03-31/functions/echo/invocations", #"{"a":2}"#, signing: #"{"a":1}"#),
                .forbidden, "InvalidSignatureException")
            // Refused signatures are logged (at notice), under the id the client was given.
            #expect(parts.logs.lines.contains { $0.message == "invoke API request refused" && $0.level == .notice })
            #expect(parts.queue.all.isEmpty)
        }
    }

    @Test func otherMethodsAndPathsAreHummingbirds404() async throws {
        try await Self.withRoutes { _, call in
            for (method, uri) in [
                (HTTPRequest.Method.get, "/2015-03-31/functions/echo/invocations"),
                (.put, "/2015-03-31/functions/echo"), (.delete, "/2015-03-31/functions/echo"),
                (.get, "/2015-03-31/nothing"), (.post, "/metrics"), (.get, "/events"),
            ] {
                let answer = try await call(method, uri)
                #expect(answer.status == .notFound, "\(method) \(uri)")
                #expect(answer.header("x-amzn-ErrorType") == nil, "\(method) \(uri)")
            }
        }
    }

    // MARK: ListFunctions / GetFunction

    @Test func listAndGetFunctions() async throws {
        try await Self.withRoutes { _, call in
            let list = try await call(.get, "/2015-03-31/functions/")
            #expect(list.status == .ok && list.header("x-amzn-RequestId") != nil)
            let functions = try #require(list.json["Functions"] as? [[String: Any]])
            #expect(functions.map { $0["FunctionName"] as? String } == ["echo", "small"])
            #expect(functions[0]["FunctionArn"] as? String == "\(Self.arnPrefix)echo")
            #expect(functions[0]["Timeout"] as? Int == 3 && functions[0]["Handler"] as? String == "echo")
            #expect(functions[0]["State"] as? String == "Active")
            #expect(try await call(.get, "/2015-03-31/functions").status == .ok)

            for name in ["small", "\(Self.arnPrefix)small", "small:$LATEST"] {
                let get = try await call(.get, "/2015-03-31/functions/\(name)")
                #expect(get.status == .ok, "\(name)")
                let configuration = get.json["Configuration"] as? [String: Any]
                #expect(configuration?["FunctionName"] as? String == "small", "\(name)")
                #expect(configuration?["Version"] as? String == "$LATEST", "\(name)")
                #expect((get.json["Code"] as? [String: Any])?["RepositoryType"] as? String == "S3", "\(name)")
            }
            Self.expectLambdaError(
                try await call(.get, "/2015-03-31/functions/gamma"), .notFound, "ResourceNotFoundException",
                message: "Function not found: \(Self.arnPrefix)gamma")
        }
    }
}
