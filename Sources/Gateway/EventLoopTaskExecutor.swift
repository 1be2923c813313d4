import Hummingbird
import NIOCore
import ServiceLifecycle

/// Runs Swift concurrency jobs on a NIO event loop. A server whose listener, connections and handler tasks
/// all live on one event loop answers without a thread hop per request (jobs enqueued from the loop itself
/// are queued in-loop, without waking another thread). swift-nio 2.101 does not provide this conformance.
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}

/// Runs a service with a task executor preference, so the structured tasks it creates (a Hummingbird
/// server's connection handlers) run on that executor.
struct PinnedService<Base: Service>: Service, CustomStringConvertible {
    let base: Base
    let executor: EventLoopTaskExecutor
    let name: String

    func run() async throws {
        try await withTaskExecutorPreference(executor) {
            try await base.run()
        }
    }

    var description: String { name }
}
