import Foundation
import FunctionRuntime
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// A Lambda Runtime API on 127.0.0.1 and a free port, serving scripted invocations and recording every post.
final class FakeRuntimeAPI: Sendable {
    struct Scripted: Sendable {
        var requestID: String
        var body: ByteBuffer
        var headers: [(String, String)]
        var status: HTTPResponse.Status = .ok
    }

    struct Post: Sendable {
        enum Kind: Sendable, Equatable { case response, error, initError }
        var kind: Kind
        var requestID: String?
        var headers: HTTPFields
        var body: ByteBuffer

        var text: String { String(buffer: body) }
        var json: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any]
        }
        func header(_ name: String) -> String? {
            HTTPField.Name(name).flatMap { headers[$0] }
        }
    }

    private struct State {
        var queue: [Scripted] = []
        var waiters: [CheckedContinuation<Scripted?, Never>] = []
        var posts: [Post] = []
        var postWaiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []
        var delivered: [String] = []
        var closed = false
        var postStatus: HTTPResponse.Status = .accepted
    }

    private let state = Mutex(State())
    let port: Int

    private init(port: Int) {
        self.port = port
    }

    /// Runs a fake API for the length of `body`.
    static func with<T: Sendable>(_ body: @Sendable (FakeRuntimeAPI) async throws -> T) async throws -> T {
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let holder = Mutex<FakeRuntimeAPI?>(nil)
        let router = Router()
        let base = "/2018-06-01/runtime"
        router.get("\(base)/invocation/next") { _, _ -> Response in
            guard let api = holder.withLock({ $0 }), let next = await api.nextScripted() else {
                return Response(status: .gone)
            }
            var fields = HTTPFields()
            fields[.contentType] = "application/json"
            for (name, value) in next.headers {
                fields[HTTPField.Name(name)!] = value
            }
            return Response(status: next.status, headers: fields, body: .init(byteBuffer: next.body))
        }
        router.post("\(base)/invocation/{id}/response") { request, context -> Response in
            let api = holder.withLock { $0 }!
            let body = try await request.body.collect(upTo: 64 * 1024 * 1024)
            return Response(
                status: api.record(
                    Post(kind: .response, requestID: context.parameters.get("id"), headers: request.headers, body: body)
                ))
        }
        router.post("\(base)/invocation/{id}/error") { request, context -> Response in
            let api = holder.withLock { $0 }!
            let body = try await request.body.collect(upTo: 1024 * 1024)
            return Response(
                status: api.record(
                    Post(kind: .error, requestID: context.parameters.get("id"), headers: request.headers, body: body)))
        }
        router.post("\(base)/init/error") { request, _ -> Response in
            let api = holder.withLock { $0 }!
            let body = try await request.body.collect(upTo: 1024 * 1024)
            return Response(
                status: api.record(Post(kind: .initError, requestID: nil, headers: request.headers, body: body)))
        }
        // Cancelling the server at the end of a test makes Hummingbird log errors: keep it quiet.
        var logger = Logger(label: "test.runtime-api")
        logger.logLevel = .critical
        let app = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in portContinuation.yield(channel.localAddress?.port ?? 0) },
            logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await app.runService(gracefulShutdownSignals: []) }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            let api = FakeRuntimeAPI(port: port)
            holder.withLock { $0 = api }
            defer {
                api.close()
                tasks.cancelAll()
            }
            return try await body(api)
        }
    }

    var configuration: RuntimeConfiguration {
        RuntimeConfiguration(host: "127.0.0.1", port: port, functionName: "test-function", logLevel: .warning)
    }

    /// Queues an invocation; `deadline` defaults to five seconds from now.
    func enqueue(
        _ requestID: String, body: String, deadline: Date? = nil, extraHeaders: [(String, String)] = []
    ) {
        enqueue(requestID, bytes: ByteBuffer(string: body), deadline: deadline, extraHeaders: extraHeaders)
    }

    func enqueue(
        _ requestID: String, bytes: ByteBuffer, deadline: Date? = nil, extraHeaders: [(String, String)] = [],
        status: HTTPResponse.Status = .ok
    ) {
        let deadlineMilliseconds = Int64(((deadline ?? Date().addingTimeInterval(5)).timeIntervalSince1970 * 1000))
        var headers = [
            ("Lambda-Runtime-Aws-Request-Id", requestID),
            ("Lambda-Runtime-Deadline-Ms", String(deadlineMilliseconds)),
            ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:test-function"),
        ]
        headers += extraHeaders
        enqueueRaw(Scripted(requestID: requestID, body: bytes, headers: headers, status: status))
    }

    func enqueueRaw(_ scripted: Scripted) {
        let waiter: CheckedContinuation<Scripted?, Never>? = state.withLock { state in
            if state.waiters.isEmpty {
                state.queue.append(scripted)
                return nil
            }
            return state.waiters.removeFirst()
        }
        waiter?.resume(returning: scripted)
        if waiter != nil { state.withLock { $0.delivered.append(scripted.requestID) } }
    }

    /// Status answered to posts (202 by default).
    func setPostStatus(_ status: HTTPResponse.Status) {
        state.withLock { $0.postStatus = status }
    }

    var posts: [Post] { state.withLock { $0.posts } }
    var delivered: [String] { state.withLock { $0.delivered } }

    /// Waits until at least `count` posts arrived (or `timeout` passed).
    func waitForPosts(_ count: Int, timeout: Duration = .seconds(60)) async -> [Post] {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let ready = self.state.withLock { state -> Bool in
                        if state.posts.count >= count { return true }
                        state.postWaiters.append((count, continuation))
                        return false
                    }
                    if ready { continuation.resume() }
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
            // Release a waiter left behind by the timeout.
            let stale = self.state.withLock { state in
                let waiters = state.postWaiters
                state.postWaiters = []
                return waiters
            }
            for waiter in stale { waiter.continuation.resume() }
        }
        return posts
    }

    /// Waits until `count` invocations were handed out by `/next`.
    func waitForDelivered(_ count: Int, timeout: Duration = .seconds(60)) async -> Bool {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < timeout {
            if delivered.count >= count { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return false
    }

    private func nextScripted() async -> Scripted? {
        await withCheckedContinuation { continuation in
            let immediate: Scripted?? = state.withLock { state in
                if state.closed { return .some(nil) }
                if !state.queue.isEmpty {
                    let next = state.queue.removeFirst()
                    state.delivered.append(next.requestID)
                    return .some(next)
                }
                state.waiters.append(continuation)
                return .none
            }
            if let immediate { continuation.resume(returning: immediate) }
        }
    }

    private func record(_ post: Post) -> HTTPResponse.Status {
        let (ready, status) = state.withLock { state in
            state.posts.append(post)
            let ready = state.postWaiters.filter { $0.count <= state.posts.count }
            state.postWaiters.removeAll { $0.count <= state.posts.count }
            return (ready, state.postStatus)
        }
        for waiter in ready { waiter.continuation.resume() }
        return status
    }

    private func close() {
        let (waiters, postWaiters) = state.withLock { state in
            state.closed = true
            let waiters = state.waiters
            let postWaiters = state.postWaiters
            state.waiters = []
            state.postWaiters = []
            return (waiters, postWaiters)
        }
        for waiter in waiters { waiter.resume(returning: nil) }
        for waiter in postWaiters { waiter.continuation.resume() }
    }
}

/// A logger for tests: quiet unless something is wrong.
func quietLogger(_ label: String = "test.function") -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = .critical
    return logger
}

/// A value set from a `@Sendable` closure and read afterwards.
final class Box<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    init(_ value: Value) { storage = Mutex(value) }
    var value: Value {
        get { storage.withLock { $0 } }
        set { storage.withLock { $0 = newValue } }
    }
}
