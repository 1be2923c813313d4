import NIOCore

/// Runs Swift concurrency jobs on a NIO event loop. A server whose listener, connections and handler tasks all
/// live on one event loop answers without a thread hop per request (jobs enqueued from the loop itself are queued
/// in-loop, without waking another thread); the function runtime's loop and its Runtime API connection share one
/// thread the same way. Hand-written because swift-nio 2.101 provides this conformance only in its test utilities
/// (`NIOTestUtils.ManualTaskExecutor`, package-internal).
public final class EventLoopTaskExecutor: TaskExecutor {
    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
