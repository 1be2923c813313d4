import Foundation
import FunctionRuntime
import Testing

/// The `hello` executable built beside the test bundle (`swift build --build-tests` builds it).
enum HelloBinary {
    static let path: String? = {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent()
        for candidate in [directory, directory.deletingLastPathComponent()] {
            let path = candidate.appendingPathComponent("hello").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }()
}

/// A running `hello` process.
// `Process` is not Sendable; it is configured and started in init and afterwards only its pid is read.
final class HelloProcess: @unchecked Sendable {
    private let process: Process
    private let exit: AsyncStream<(Int32, Process.TerminationReason)>

    init(mode: String, port: Int, environment: [String: String] = [:]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(HelloBinary.path))
        process.arguments = [mode]
        var env = ProcessInfo.processInfo.environment
        env["AWS_LAMBDA_RUNTIME_API"] = "127.0.0.1:\(port)"
        env["AWS_LAMBDA_FUNCTION_NAME"] = "hello"
        env["LOG_LEVEL"] = "error"
        env.merge(environment) { $1 }
        process.environment = env
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let (stream, continuation) = AsyncStream.makeStream(of: (Int32, Process.TerminationReason).self)
        process.terminationHandler = { process in
            continuation.yield((process.terminationStatus, process.terminationReason))
            continuation.finish()
        }
        try process.run()
        self.process = process
        self.exit = stream
    }

    func signal(_ number: Int32) {
        kill(process.processIdentifier, number)
    }

    /// Waits for the process to exit; kills it and returns nil after `timeout`.
    func waitForExit(timeout: Duration = .seconds(60)) async -> (status: Int32, reason: Process.TerminationReason)? {
        let stream = exit
        let result = await withTaskGroup(of: (Int32, Process.TerminationReason)?.self) { group in
            group.addTask {
                for await value in stream { return value }
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        if result == nil { signal(SIGKILL) }
        return result.map { (status: $0.0, reason: $0.1) }
    }
}

@Suite("hello, the example function, as a process", .enabled(if: HelloBinary.path != nil))
struct HelloFunctionTests {
    @Test("echo returns the event unchanged; SIGTERM while idle exits 0")
    func echo() async throws {
        try await FakeRuntimeAPI.with { api in
            let hello = try HelloProcess(mode: "echo", port: api.port)
            api.enqueue("1", body: #"{"a":1}"#)
            api.enqueue("2", bytes: .init(bytes: [0, 1, 2, 255]))
            let posts = await api.waitForPosts(2)
            #expect(posts.map(\.kind) == [.response, .response])
            #expect(posts.first?.text == #"{"a":1}"#)
            #expect(posts.last.map { Array($0.body.readableBytesView) } == [0, 1, 2, 255])
            _ = await api.waitForDelivered(2)
            try await Task.sleep(for: .milliseconds(100))  // back in /next
            hello.signal(SIGTERM)
            let exit = await hello.waitForExit()
            #expect(exit?.status == 0 && exit?.reason == .exit)
        }
    }

    @Test("sleep: SIGTERM mid-invocation finishes it, posts the response, then exits 0")
    func sleepThenTerminate() async throws {
        try await FakeRuntimeAPI.with { api in
            let hello = try HelloProcess(mode: "sleep", port: api.port)
            api.enqueue("s", body: #"{"seconds": 0.5}"#)
            #expect(await api.waitForDelivered(1))
            try await Task.sleep(for: .milliseconds(100))
            hello.signal(SIGTERM)
            let exit = await hello.waitForExit()
            #expect(exit?.status == 0 && exit?.reason == .exit)
            let posts = api.posts
            #expect(posts.map(\.kind) == [.response])
            #expect(posts.first?.json?["slept"] as? Double == 0.5)
        }
    }

    @Test("fail posts an error typed HelloFailure and keeps serving")
    func fail() async throws {
        try await FakeRuntimeAPI.with { api in
            let hello = try HelloProcess(mode: "fail", port: api.port)
            api.enqueue("f1", body: "{}")
            api.enqueue("f2", body: "{}")
            let posts = await api.waitForPosts(2)
            #expect(posts.map(\.kind) == [.error, .error])
            #expect(posts.first?.json?["errorType"] as? String == "HelloFailure")
            #expect(posts.first?.json?["errorMessage"] as? String == "hello was asked to fail")
            #expect(posts.first?.header("Lambda-Runtime-Function-Error-Type") == "Unhandled")
            hello.signal(SIGTERM)
            #expect(await hello.waitForExit()?.status == 0)
        }
    }

    @Test("init-fail posts an init error and exits 1")
    func initFail() async throws {
        try await FakeRuntimeAPI.with { api in
            let hello = try HelloProcess(mode: "init-fail", port: api.port)
            let exit = await hello.waitForExit()
            #expect(exit?.status == 1 && exit?.reason == .exit)
            let posts = api.posts
            #expect(posts.map(\.kind) == [.initError])
            #expect(posts.first?.header("Lambda-Runtime-Function-Error-Type") == "Runtime.InitError")
            #expect(posts.first?.json?["errorType"] as? String == "HelloInitFailure")
        }
    }

    @Test("crash dies mid-invocation without a response")
    func crash() async throws {
        try await FakeRuntimeAPI.with { api in
            let hello = try HelloProcess(mode: "crash", port: api.port)
            api.enqueue("c", body: "{}")
            let exit = await hello.waitForExit()
            #expect(exit?.reason == .uncaughtSignal)
            #expect(api.delivered == ["c"])
            #expect(api.posts.isEmpty)
        }
    }

    @Test("record appends each event as one fsync'd line, then returns it")
    func record() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent(
            "hello-record-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: file) }
        try await FakeRuntimeAPI.with { api in
            let hello = try HelloProcess(mode: "record", port: api.port, environment: ["HELLO_RECORD_FILE": file.path])
            api.enqueue("r1", body: "{\"k\":\n \"v\"}")
            api.enqueue("r2", body: #"{"n":2}"#)
            let posts = await api.waitForPosts(2)
            #expect(posts.map(\.text) == ["{\"k\":\n \"v\"}", #"{"n":2}"#])
            let lines = try String(contentsOf: file, encoding: .utf8).split(
                separator: "\n", omittingEmptySubsequences: false)
            #expect(lines == [#"{"k":  "v"}"#, #"{"n":2}"#, ""])
            hello.signal(SIGTERM)
            #expect(await hello.waitForExit()?.status == 0)
        }
    }

    @Test("record without HELLO_RECORD_FILE is an init error")
    func recordWithoutFile() async throws {
        try await FakeRuntimeAPI.with { api in
            let hello = try HelloProcess(mode: "record", port: api.port, environment: ["HELLO_RECORD_FILE": ""])
            #expect(await hello.waitForExit()?.status == 1)
            #expect(api.posts.first?.json?["errorMessage"] as? String == "record mode needs HELLO_RECORD_FILE")
        }
    }

    @Test("an unreachable Runtime API makes the process exit non-zero")
    func unreachable() async throws {
        // Port 1 on loopback: nothing listens there.
        let hello = try HelloProcess(mode: "echo", port: 1)
        let exit = await hello.waitForExit()
        #expect(exit?.status == 1 && exit?.reason == .exit)
    }

    @Test("the Runtime API going away mid-poll makes the process exit non-zero")
    func apiGoesAway() async throws {
        let hello = try await FakeRuntimeAPI.with { api in
            let hello = try HelloProcess(mode: "echo", port: api.port)
            api.enqueue("1", body: "x")
            _ = await api.waitForPosts(1)
            return hello
        }
        let exit = await hello.waitForExit()
        #expect(exit?.status == 1 && exit?.reason == .exit)
    }
}
