import Foundation
import FunctionRuntime
import Logging
import NIOCore
import NIOPosix
import Testing

struct Greeting: Decodable, Sendable {
    var name: String
    var count: Int
}

struct Reply: Codable, Sendable, Equatable {
    var message: String
}

struct CustomFailure: FunctionError {
    var errorType: String { "Custom.Failure" }
    var errorMessage: String { "custom \"quoted\"\nmessage" }
}

enum PlainFailure: Error {
    case boom(code: Int)
}

/// Runs the real loop over HTTP against `api` for `invocations` invocations.
func serve<Handler: ByteHandler>(
    _ api: FakeRuntimeAPI, invocations: Int, shutdown: ShutdownCoordinator = ShutdownCoordinator(),
    makeHandler: () async throws -> Handler
) async throws -> FunctionRuntime.LoopOutcome {
    let client = RuntimeAPIHTTPClient(
        host: "127.0.0.1", port: api.port, eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
        logger: quietLogger())
    let outcome = try await FunctionRuntime.runLoop(
        client: client, configuration: api.configuration, logger: quietLogger(), shutdown: shutdown,
        maxInvocations: invocations, makeHandler: makeHandler)
    await client.close()
    return outcome
}

@Suite("Run loop over a real Runtime API server")
struct RunLoopTests {
    @Test("headers become the context; the deadline is honoured")
    func contextFromHeaders() async throws {
        try await FakeRuntimeAPI.with { api in
            let deadline = Date().addingTimeInterval(7)
            api.enqueue(
                "req-1", body: "{}", deadline: deadline,
                extraHeaders: [
                    ("Lambda-Runtime-Trace-Id", "Root=1-5f84c7a9-0f9c2d1b;Parent=abc;Sampled=1"),
                    ("Lambda-Runtime-Client-Context", #"{"client":{"app_title":"t"}}"#),
                    ("Lambda-Runtime-Cognito-Identity", #"{"cognitoIdentityId":"id"}"#),
                ])
            let seen = Box<FunctionContext?>(nil)
            let outcome = try await serve(api, invocations: 1) {
                ClosureByteHandler { event, context in
                    seen.value = context
                    return event
                }
            }
            #expect(outcome == .finished(invocations: 1))
            let context = try #require(seen.value)
            #expect(context.requestID == "req-1")
            #expect(context.invokedFunctionARN == "arn:aws:lambda:us-east-1:000000000000:function:test-function")
            #expect(context.functionName == "test-function")
            #expect(context.traceID == "Root=1-5f84c7a9-0f9c2d1b;Parent=abc;Sampled=1")
            #expect(context.clientContext == #"{"client":{"app_title":"t"}}"#)
            #expect(context.cognitoIdentity == #"{"cognitoIdentityId":"id"}"#)
            #expect(context.deadlineMilliseconds == Int64(deadline.timeIntervalSince1970 * 1000))
            #expect(abs(context.deadlineDate.timeIntervalSince(deadline)) < 0.002)
            // remainingTime counts down to the deadline from the header, whatever the machine's load.
            let expected = deadline.timeIntervalSinceNow
            let remaining = context.remainingTime
            let remainingSeconds =
                Double(remaining.components.seconds) + Double(remaining.components.attoseconds) / 1e18
            #expect(abs(remainingSeconds - expected) < 0.05)
            #expect(remaining <= .seconds(7))
            #expect(context.logger[metadataKey: "cinescale.request.id"] == "req-1")
        }
    }

    @Test("responses are posted to /response with the handler's bytes, in order, on one connection")
    func responsesDelivered() async throws {
        try await FakeRuntimeAPI.with { api in
            // 3 MiB, arriving in many reads: a 251-byte pattern so misplaced chunks show.
            let pattern = (0..<251).map { UInt8($0) }
            var big = ByteBuffer()
            for _ in 0..<(3 * 1024 * 1024 / 251) { big.writeBytes(pattern) }
            api.enqueue("a", body: "first")
            api.enqueue("b", bytes: big)
            api.enqueue("c", body: "")
            let outcome = try await serve(api, invocations: 3) {
                ClosureByteHandler { event, _ in event }
            }
            #expect(outcome == .finished(invocations: 3))
            let posts = api.posts
            #expect(posts.map(\.kind) == [.response, .response, .response])
            #expect(posts.map(\.requestID) == ["a", "b", "c"])
            #expect(posts[0].text == "first")
            #expect(posts[1].body == big)
            #expect(posts[2].body.readableBytes == 0)
        }
    }

    @Test("typed handler: JSON in, JSON out; NoOutput gives an empty body")
    func typedHandler() async throws {
        try await FakeRuntimeAPI.with { api in
            api.enqueue("t1", body: #"{"name":"Ada","count":2}"#)
            let outcome = try await serve(api, invocations: 1) {
                JSONByteHandler(
                    ClosureFunctionHandler { (event: Greeting, _: FunctionContext) in
                        Reply(message: String(repeating: "hi \(event.name) ", count: event.count))
                    })
            }
            #expect(outcome == .finished(invocations: 1))
            let reply = try JSONDecoder().decode(Reply.self, from: Data(api.posts[0].body.readableBytesView))
            #expect(reply == Reply(message: "hi Ada hi Ada "))

            api.enqueue("t2", body: #"{"name":"Bo","count":1}"#)
            _ = try await serve(api, invocations: 1) {
                JSONByteHandler(ClosureFunctionHandler { (_: Greeting, _: FunctionContext) in NoOutput() })
            }
            #expect(api.posts[1].kind == .response)
            #expect(api.posts[1].body.readableBytes == 0)
        }
    }

    @Test("handler errors are posted to /error with the Lambda JSON shape and Unhandled header")
    func handlerErrors() async throws {
        try await FakeRuntimeAPI.with { api in
            api.enqueue("e1", body: "{}")
            api.enqueue("e2", body: "{}")
            api.enqueue("ok", body: "fine")
            let calls = Box(0)
            let outcome = try await serve(api, invocations: 3) {
                ClosureByteHandler { event, _ in
                    calls.value += 1
                    switch calls.value {
                    case 1: throw CustomFailure()
                    case 2: throw PlainFailure.boom(code: 7)
                    default: return event
                    }
                }
            }
            #expect(outcome == .finished(invocations: 3))
            let posts = api.posts
            #expect(posts.map(\.kind) == [.error, .error, .response])
            #expect(posts.map(\.requestID) == ["e1", "e2", "ok"])
            for post in posts.prefix(2) {
                #expect(post.header("Lambda-Runtime-Function-Error-Type") == "Unhandled")
                #expect(post.header("Content-Type") == "application/json")
                #expect(post.json?["stackTrace"] as? [Any] != nil)
                #expect(post.json?.count == 3)
            }
            #expect(posts[0].json?["errorType"] as? String == "Custom.Failure")
            #expect(posts[0].json?["errorMessage"] as? String == "custom \"quoted\"\nmessage")
            #expect(posts[1].json?["errorType"] as? String == "PlainFailure")
            #expect(posts[1].json?["errorMessage"] as? String == "boom(code: 7)")
            #expect(posts[2].text == "fine")
        }
    }

    @Test("an event that does not decode is reported as Runtime.UnmarshalError with a readable message")
    func decodeError() async throws {
        try await FakeRuntimeAPI.with { api in
            api.enqueue("d1", body: #"{"name":"Ada"}"#)
            api.enqueue("d2", body: #"{"name":"Ada","count":"two"}"#)
            api.enqueue("d3", body: "not json")
            _ = try await serve(api, invocations: 3) {
                JSONByteHandler(ClosureFunctionHandler { (_: Greeting, _: FunctionContext) in NoOutput() })
            }
            let posts = api.posts
            #expect(posts.map(\.kind) == [.error, .error, .error])
            for post in posts {
                #expect(post.json?["errorType"] as? String == "Runtime.UnmarshalError")
            }
            let messages = posts.map { $0.json?["errorMessage"] as? String ?? "" }
            #expect(messages[0] == "could not decode the event as Greeting: missing key 'count' at the top level")
            #expect(messages[1].hasPrefix("could not decode the event as Greeting: expected Int at count"))
            #expect(messages[2].hasPrefix("could not decode the event as Greeting: invalid data at the top level"))
        }
    }

    @Test("an init failure is posted to /init/error with Runtime.InitError")
    func initError() async throws {
        try await FakeRuntimeAPI.with { api in
            let outcome = try await serve(api, invocations: 1) { () throws -> ClosureByteHandler in
                throw CustomFailure()
            }
            #expect(
                outcome
                    == .initFailed(ErrorReport(errorType: "Custom.Failure", errorMessage: "custom \"quoted\"\nmessage"))
            )
            let posts = api.posts
            #expect(posts.map(\.kind) == [.initError])
            #expect(posts[0].header("Lambda-Runtime-Function-Error-Type") == "Runtime.InitError")
            #expect(posts[0].json?["errorType"] as? String == "Custom.Failure")
            #expect(api.delivered.isEmpty)
        }
    }

    @Test("a stop requested during an invocation lets it finish, then the loop returns")
    func stopDuringInvocation() async throws {
        try await FakeRuntimeAPI.with { api in
            api.enqueue("s1", body: "slow")
            api.enqueue("s2", body: "never")
            let shutdown = ShutdownCoordinator()
            let outcome = try await serve(api, invocations: 5, shutdown: shutdown) {
                ClosureByteHandler { event, _ in
                    #expect(shutdown.requestStop() == false)
                    try await Task.sleep(for: .milliseconds(50))
                    return event
                }
            }
            #expect(outcome == .stopped(invocations: 1))
            #expect(api.posts.map(\.requestID) == ["s1"])
            #expect(api.posts[0].text == "slow")
            #expect(shutdown.isStopRequested)
        }
    }

    @Test("a refused post (4xx) is logged and the loop carries on")
    func refusedPost() async throws {
        try await FakeRuntimeAPI.with { api in
            api.setPostStatus(.gone)
            api.enqueue("r1", body: "a")
            api.enqueue("r2", body: "b")
            let outcome = try await serve(api, invocations: 2) { ClosureByteHandler { event, _ in event } }
            #expect(outcome == .finished(invocations: 2))
            #expect(api.posts.count == 2)
        }
    }

    @Test("a 5xx on a post, a failing /next or a missing request id stop the loop with an error")
    func fatalAPIResponses() async throws {
        try await FakeRuntimeAPI.with { api in
            api.setPostStatus(.internalServerError)
            api.enqueue("x1", body: "a")
            await #expect(throws: RuntimeError.unexpectedStatus) {
                _ = try await serve(api, invocations: 2) { ClosureByteHandler { event, _ in event } }
            }
            api.enqueue("x2", bytes: ByteBuffer(string: "container error"), status: .internalServerError)
            await #expect(throws: RuntimeError.unexpectedStatus) {
                _ = try await serve(api, invocations: 1) { ClosureByteHandler { event, _ in event } }
            }
            api.enqueueRaw(.init(requestID: "", body: ByteBuffer(string: "{}"), headers: []))
            await #expect(throws: RuntimeError.protocolViolation) {
                _ = try await serve(api, invocations: 1) { ClosureByteHandler { event, _ in event } }
            }
        }
    }

    @Test("an unreachable Runtime API is a connection failure")
    func unreachable() async throws {
        // Bind a port, then close it, so nothing listens there.
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(channel.localAddress?.port)
        try await channel.close()
        let client = RuntimeAPIHTTPClient(
            host: "127.0.0.1", port: port, eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
            logger: quietLogger())
        await #expect(throws: RuntimeError.connectionFailed) {
            _ = try await FunctionRuntime.runLoop(
                client: client,
                configuration: RuntimeConfiguration(host: "127.0.0.1", port: port, functionName: "f"),
                logger: quietLogger(), makeHandler: { ClosureByteHandler { event, _ in event } })
        }
    }
}

/// A client scripted in memory: the loop is generic over `RuntimeAPIClient`.
final class ScriptedClient: RuntimeAPIClient {
    var invocations: [Invocation]
    var responses: [(String, String)] = []
    var errors: [(String, ErrorReport)] = []

    init(_ invocations: [Invocation]) {
        self.invocations = invocations
    }

    func nextInvocation() async throws -> Invocation {
        guard !invocations.isEmpty else { throw RuntimeError.connectionClosed }
        return invocations.removeFirst()
    }

    func reportResponse(requestID: String, body: ByteBuffer) async throws {
        responses.append((requestID, String(buffer: body)))
    }

    func reportError(requestID: String, error: ErrorReport) async throws {
        errors.append((requestID, error))
    }

    func reportInitError(_ error: ErrorReport) async throws {
        Issue.record("unexpected init error \(error)")
    }
}

@Test("the loop runs against a scripted in-memory client; a missing deadline allows 15 minutes")
func scriptedClient() async throws {
    let client = ScriptedClient([
        Invocation(requestID: "1", deadlineMilliseconds: nil, event: ByteBuffer(string: "one")),
        Invocation(requestID: "2", deadlineMilliseconds: nil, event: ByteBuffer(string: "boom")),
    ])
    let remaining = Box<Duration>(.zero)
    let outcome = try await FunctionRuntime.runLoop(
        client: client, configuration: RuntimeConfiguration(host: "x", port: 1, functionName: "f"),
        logger: quietLogger(), maxInvocations: 2
    ) {
        ClosureByteHandler { event, context in
            remaining.value = context.remainingTime
            if String(buffer: event) == "boom" { throw PlainFailure.boom(code: 1) }
            return ByteBuffer(string: String(buffer: event).uppercased())
        }
    }
    #expect(outcome == .finished(invocations: 2))
    #expect(client.responses.map(\.0) == ["1"])
    #expect(client.responses.map(\.1) == ["ONE"])
    #expect(client.errors.map(\.0) == ["2"])
    #expect(client.errors.first?.1 == ErrorReport(errorType: "PlainFailure", errorMessage: "boom(code: 1)"))
    #expect(remaining.value > .seconds(899) && remaining.value <= .seconds(900))
}

@Test("configuration is read from the environment in one place")
func configurationFromEnvironment() throws {
    let configuration = try RuntimeConfiguration.fromEnvironment([
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "AWS_LAMBDA_FUNCTION_NAME": "probe",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512", "LOG_LEVEL": "WARN", "AWS_LAMBDA_FUNCTION_VERSION": "3",
    ])
    #expect(
        configuration
            == RuntimeConfiguration(
                host: "127.0.0.1", port: 9001, functionName: "probe", functionVersion: "3", memoryLimitMB: 512,
                logLevel: .warning))
    let ipv6 = try RuntimeConfiguration.fromEnvironment(["AWS_LAMBDA_RUNTIME_API": "[::1]:80", "LOG_LEVEL": "debug"])
    #expect(ipv6.host == "::1" && ipv6.port == 80 && ipv6.logLevel == .debug)
    #expect(ipv6.memoryLimitMB == nil && ipv6.functionVersion == "$LATEST")
    #expect(throws: RuntimeError.invalidConfiguration) { try RuntimeConfiguration.fromEnvironment([:]) }
    #expect(throws: RuntimeError.invalidConfiguration) {
        try RuntimeConfiguration.fromEnvironment(["AWS_LAMBDA_RUNTIME_API": "localhost"])
    }
    #expect(throws: RuntimeError.invalidConfiguration) {
        try RuntimeConfiguration.fromEnvironment(["AWS_LAMBDA_RUNTIME_API": "h:1", "LOG_LEVEL": "loud"])
    }
}

@Test("error reports escape JSON without Foundation")
func errorReportJSON() throws {
    let report = ErrorReport(errorType: "T", errorMessage: "a\"b\\c\n\t\u{01}é")
    let parsed = try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any]
    #expect(parsed?["errorMessage"] as? String == "a\"b\\c\n\t\u{01}é")
    #expect(parsed?["errorType"] as? String == "T")
    #expect((parsed?["stackTrace"] as? [Any])?.isEmpty == true)
}

// The closure conveniences must type-check as documented; these are never called (`run` does not return).
func typedClosureConvenience() async -> Never {
    await FunctionRuntime.run { (event: Greeting, context) in
        context.logger.debug("greeting")
        return Reply(message: "\(event.name) \(context.requestID)")
    }
}

func byteClosureConvenience() async -> Never {
    await FunctionRuntime.run { (event: ByteBuffer, _) in event }
}

func noOutputClosureConvenience() async -> Never {
    await FunctionRuntime.run { (_: Greeting, _) in NoOutput() }
}
