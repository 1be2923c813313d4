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

/// Every route of the gateway's public router in process (HummingbirdTesting's router client): the Invoke API,
/// the event webhook, the operator view of the queue, `/metrics` and `/healthz`, with each answer they give,
/// errors included — status, Lambda error type or code, message and headers. No server, no worker process:
/// the routes run over the gateway's core (its dispatchers, never started), an in-memory queue and a fake
/// scheduler and function runner (RouteFakes.swift). The wire with real clients and real workers stays in
/// InvokeAPITests, TriggerTests and the Python tests.
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

    // MARK: POST /events

    static func awsBody(_ keys: [String], bucket: String = "ingest") -> String {
        let records = keys.enumerated().map { n, key in
            TriggerTests.awsRecord(bucket: bucket, key: key, etag: "e\(n)", sequencer: "0A\(n)")
        }
        return #"{"Records":[\#(records.joined(separator: ","))]}"#
    }

    @Test func eventsAreCommittedThenCountedInTheAnswer() async throws {
        try await Self.withRoutes { parts, call in
            let auth: HTTPFields = [.authorization: "Bearer \(Self.token)"]
            let body = Self.awsBody(["a.mp4", "b.mp4"])
            let first = try await call(.post, "/events", body, headers: auth, credentials: nil)
            #expect(first.status == .ok && first.header("Content-Type") == "application/json")
            #expect(first.text == #"{"records":2,"queued":2,"duplicates":0}"#)
            #expect(parts.queue.all.map(\.function) == ["echo", "echo"])
            #expect(parts.queue.all.allSatisfy { $0.source == "s3" && $0.dedupeKey != nil })
            #expect(parts.scheduler.scheduled.count == 2)
            // The same notification again (a store's retry): deduplicated. The token as a query parameter.
            let again = try await call(.post, "/events?token=\(Self.token)", body, credentials: nil)
            #expect(again.text == #"{"records":2,"queued":0,"duplicates":2}"#)
            // A bucket no rule names, and AWS's test event: read, nothing queued.
            #expect(
                try await call(
                    .post, "/events", Self.awsBody(["c.mp4"], bucket: "other"), headers: auth, credentials: nil
                )
                .text == #"{"records":1,"queued":0,"duplicates":0}"#)
            let test =
                #"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-25T10:00:00.000Z","Bucket":"ingest"}"#
            #expect(
                try await call(.post, "/events", test, headers: auth, credentials: nil).text
                    == #"{"records":0,"queued":0,"duplicates":0}"#)
            #expect(parts.queue.all.count == 2)
            // The observer saw every accepted body, after its commit.
            #expect(parts.observed.withLock { $0.count } == 4)
            let metrics = try await call(.get, "/metrics", credentials: nil)
            #expect(metrics.status == .ok)
            #expect(metrics.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
            #expect(metrics.text.contains("cinescale_gateway_event_notifications_total 4"))
            #expect(metrics.text.contains("cinescale_gateway_event_records_total 5"))
        }
    }

    @Test func theWebhookRefusesWhatItCannotTrust() async throws {
        try await Self.withRoutes { parts, call in
            let body = Self.awsBody(["a.mp4"])
            for headers: HTTPFields in [[:], [.authorization: "Bearer wrong"], [.authorization: Self.token]] {
                let refused = try await call(.post, "/events", body, headers: headers, credentials: nil)
                Self.expectError(refused, .unauthorized, "Unauthorized")
                #expect(refused.header("WWW-Authenticate") == "Bearer")
            }
            Self.expectError(
                try await call(.post, "/events?token=wrong", body, credentials: nil), .unauthorized, "Unauthorized")
            let auth: HTTPFields = [.authorization: "Bearer \(Self.token)"]
            for (garbage, message) in [
                ("this is not json", "The body is not a JSON object."),
                (#"{"hello":1}"#, "The body is not an S3 event notification (no 'Records' array)."),
                (#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#, nil),
            ] {
                let refused = try await call(.post, "/events", garbage, headers: auth, credentials: nil)
                Self.expectError(refused, .badRequest, "InvalidEvent", "\(garbage)")
                if let message { #expect(refused.error["message"] as? String == message) }
            }
            let huge = String(repeating: " ", count: OperatorAPI.maxEventBytes + 1)
            Self.expectError(
                try await call(.post, "/events", huge, headers: auth, credentials: nil), .contentTooLarge,
                "RequestEntityTooLarge")
            #expect(parts.queue.all.isEmpty && parts.observed.withLock { $0.isEmpty })
        }
    }

    @Test func theWebhookAtTheQueuesBoundSaysSlowDown() async throws {
        try await Self.withRoutes(maxPending: 2) { parts, call in
            let auth: HTTPFields = [.authorization: "Bearer \(Self.token)"]
            // One notification is let in below the bound, whatever its size.
            let batch = try await call(
                .post, "/events", Self.awsBody(["a", "b", "c"]), headers: auth, credentials: nil)
            #expect(batch.status == .ok && parts.queue.all.count == 3)
            let refused = try await call(.post, "/events", Self.awsBody(["d"]), headers: auth, credentials: nil)
            Self.expectError(refused, .serviceUnavailable, "SlowDown")
            #expect(refused.header("Retry-After") == "1")
            #expect(parts.queue.all.count == 3)
        }
    }

    @Test func theWebhooksOwnFailuresAre503WithARequestID() async throws {
        try await Self.withRoutes { parts, call in
            let auth: HTTPFields = [.authorization: "Bearer \(Self.token)"]
            parts.queue.failing = true
            Self.expectFault(
                try await call(.post, "/events", Self.awsBody(["a"]), headers: auth, credentials: nil),
                .serviceUnavailable, "QueueUnavailable", parts, logged: Self.internalDetail)
            parts.queue.failing = false
            parts.observerFails.store(true, ordering: .relaxed)
            Self.expectFault(
                try await call(.post, "/events", Self.awsBody(["b"]), headers: auth, credentials: nil),
                .serviceUnavailable, "ObserverUnavailable", parts, logged: Self.internalDetail)
            // Committed before the observer failed: the store's retry finds it a duplicate.
            parts.observerFails.store(false, ordering: .relaxed)
            #expect(
                try await call(.post, "/events", Self.awsBody(["b"]), headers: auth, credentials: nil).text
                    == #"{"records":1,"queued":0,"duplicates":1}"#)
        }
    }

    // MARK: The operator view of the queue

    static func seeded(
        _ id: String, function: String = "echo", state: QueuedInvocation.State, at seconds: TimeInterval
    ) -> QueuedInvocation {
        let created = Date(timeIntervalSince1970: seconds)
        return QueuedInvocation(
            id: id, function: function, source: "s3", dedupeKey: nil, payload: Data(#"{"n":"\#(id)"}"#.utf8),
            state: state, attempts: state == .dead ? 2 : 0, maxAttempts: 2, createdAt: created,
            expiresAt: created.addingTimeInterval(3600), nextAttemptAt: created,
            finishedAt: state == .dead ? created.addingTimeInterval(1) : nil,
            errorType: state == .dead ? "RuntimeError" : nil, errorMessage: state == .dead ? "always fails" : nil)
    }

    @Test func invocationsAreListedNewestFirstByFilter() async throws {
        try await Self.withRoutes { parts, call in
            parts.queue.seed(Self.seeded("i1", state: .succeeded, at: 1000))
            parts.queue.seed(Self.seeded("i2", state: .dead, at: 2000))
            parts.queue.seed(Self.seeded("i3", function: "small", state: .queued, at: 3000))
            parts.queue.seed(Self.seeded("i4", state: .dead, at: 4000))
            func ids(_ uri: String) async throws -> [String] {
                let answer = try await call(.get, uri)
                #expect(answer.status == .ok, "\(uri)")
                return (answer.json["invocations"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            }
            #expect(try await ids("/invocations") == ["i4", "i3", "i2", "i1"])
            #expect(try await ids("/invocations?state=dead") == ["i4", "i2"])
            #expect(try await ids("/invocations?state=dead-lettered,succeeded") == ["i4", "i2", "i1"])
            #expect(try await ids("/invocations?function=small") == ["i3"])
            #expect(try await ids("/invocations?before=3000") == ["i2", "i1"])
            // A full page says where the next one starts.
            let page = try await call(.get, "/invocations?limit=2")
            #expect(page.json["nextBefore"] as? Double == 3000)
            #expect(try await call(.get, "/invocations?limit=3").json["nextBefore"] as? Double == 2000)
            #expect(try await call(.get, "/invocations?limit=4").json["nextBefore"] as? Double == 1000)
            #expect(try await call(.get, "/invocations?limit=5").json["nextBefore"] == nil)
            let letter = try #require(
                (try await call(.get, "/invocations?state=dead&limit=1")
                    .json["invocations"] as? [[String: Any]])?.first)
            #expect(letter["errorType"] as? String == "RuntimeError" && letter["attempts"] as? Int == 2)
            #expect((letter["event"] as? [String: Any])?["n"] as? String == "i4")

            for uri in [
                "/invocations?state=sideways", "/invocations?limit=0", "/invocations?limit=1001",
                "/invocations?limit=many", "/invocations?before=yesterday",
            ] {
                Self.expectError(try await call(.get, uri), .badRequest, "InvalidParameterValue", "\(uri)")
            }
        }
    }

    @Test func oneInvocationById() async throws {
        try await Self.withRoutes { parts, call in
            parts.queue.seed(Self.seeded("i1", state: .queued, at: 1000))
            let one = try await call(.get, "/invocations/i1")
            #expect(one.status == .ok && one.json["id"] as? String == "i1" && one.json["state"] as? String == "queued")
            #expect(one.json["nextAttemptAt"] as? Double == 1000 && one.json["source"] as? String == "s3")
            let missing = try await call(.get, "/invocations/nope")
            Self.expectError(missing, .notFound, "ResourceNotFoundException")
            #expect(missing.error["message"] as? String == "No invocation with id 'nope'.")
        }
    }

    @Test func aDeadLetterIsRedrivenWithAFreshBudget() async throws {
        try await Self.withRoutes { parts, call in
            parts.queue.seed(Self.seeded("dead", state: .dead, at: 1000))
            parts.queue.seed(Self.seeded("done", state: .succeeded, at: 1000))
            parts.queue.seed(Self.seeded("gone", function: "removed", state: .dead, at: 1000))
            let redriven = try await call(.post, "/invocations/dead/redrive")
            #expect(redriven.status == .ok)
            #expect(redriven.json["state"] as? String == "queued" && redriven.json["attempts"] as? Int == 0)
            #expect(redriven.json["source"] as? String == "redrive")
            #expect(parts.scheduler.scheduled == ["dead"])
            // It is no longer dead: a second re-drive is a conflict.
            let twice = try await call(.post, "/invocations/dead/redrive")
            Self.expectError(twice, .conflict, "InvalidState")
            #expect(twice.error["message"] as? String == "Invocation 'dead' is queued, not dead-lettered.")
            Self.expectError(try await call(.post, "/invocations/done/redrive"), .conflict, "InvalidState")
            let unconfigured = try await call(.post, "/invocations/gone/redrive")
            Self.expectError(unconfigured, .conflict, "ResourceNotFoundException")
            #expect(
                unconfigured.error["message"] as? String == "Function 'removed' is not configured on this gateway.")
            Self.expectError(try await call(.post, "/invocations/nope/redrive"), .notFound, "ResourceNotFoundException")
            // Another operator re-drove it between the look and the write.
            parts.queue.seed(Self.seeded("raced", state: .dead, at: 1000))
            parts.queue.beforeRedrive { $0["raced"]?.state = .queued }
            let raced = try await call(.post, "/invocations/raced/redrive")
            Self.expectError(raced, .conflict, "InvalidState")
            #expect(raced.error["message"] as? String == "Invocation 'raced' is no longer dead-lettered.")
            #expect(parts.scheduler.scheduled == ["dead"])
        }
    }

    @Test func aRedriveAtTheQueuesBoundIs429() async throws {
        try await Self.withRoutes(maxPending: 1) { parts, call in
            parts.queue.seed(Self.seeded("dead", state: .dead, at: 1000))
            parts.queue.seed(Self.seeded("busy", state: .running, at: 2000))
            let refused = try await call(.post, "/invocations/dead/redrive")
            Self.expectError(refused, .tooManyRequests, "TooManyRequestsException")
            #expect(refused.header("Retry-After") == "1")
            #expect(try await parts.queue.get(id: "dead")?.state == .dead)
        }
    }

    @Test func theOperatorRoutesAreSigned() async throws {
        try await Self.withRoutes { parts, call in
            parts.queue.seed(Self.seeded("dead", state: .dead, at: 1000))
            for (method, uri) in [
                (HTTPRequest.Method.get, "/invocations"), (.get, "/invocations/dead"),
                (.post, "/invocations/dead/redrive"),
            ] {
                Self.expectError(
                    try await call(method, uri, credentials: nil), .forbidden, "MissingAuthenticationTokenException",
                    "\(uri)")
                Self.expectError(
                    try await call(
                        method, uri,
                        credentials: Credentials(accessKeyId: Self.credentials.accessKeyId, secretAccessKey: "wrong")),
                    .forbidden, "InvalidSignatureException", "\(uri)")
                Self.expectError(
                    try await call(
                        method, uri, credentials: Credentials(accessKeyId: "AKIDNOPE", secretAccessKey: "x")),
                    .forbidden, "UnrecognizedClientException", "\(uri)")
            }
            #expect(try await parts.queue.get(id: "dead")?.state == .dead)
        }
    }

    @Test func aQueueThatFailsIsA500WithARequestID() async throws {
        try await Self.withRoutes { parts, call in
            parts.queue.seed(Self.seeded("dead", state: .dead, at: 1000))
            parts.queue.failing = true
            for (method, uri) in [
                (HTTPRequest.Method.get, "/invocations"), (.get, "/invocations/dead"),
                (.post, "/invocations/dead/redrive"),
            ] {
                Self.expectFault(
                    try await call(method, uri), .internalServerError, "QueueUnavailable", parts,
                    logged: Self.internalDetail)
            }
        }
    }

    // MARK: /healthz

    @Test func healthSaysWhetherEveryFunctionServes() async throws {
        try await Self.withRoutes { parts, call in
            parts.queue.seed(Self.seeded("w", state: .queued, at: 1000))
            parts.queue.seed(Self.seeded("r", state: .running, at: 1000))
            let healthy = try await call(.get, "/healthz", credentials: nil)
            #expect(healthy.status == .ok && healthy.json["status"] as? String == "ok")
            let functions = try #require(healthy.json["functions"] as? [[String: Any]])
            #expect(functions.map { $0["name"] as? String } == ["echo", "small"])
            #expect(functions[0]["state"] as? String == "active" && functions[0]["workers"] as? Int == 0)
            #expect(functions[0]["queued"] as? Int == 1 && functions[0]["running"] as? Int == 1)

            parts.dispatcher("small").beginStop()
            let degraded = try await call(.get, "/healthz", credentials: nil)
            #expect(degraded.status == .serviceUnavailable && degraded.json["status"] as? String == "degraded")
            #expect((degraded.json["functions"] as? [[String: Any]])?[1]["state"] as? String == "stopped")
        }
    }
}
