import EventLoopExecutor
import Hummingbird
import NIOCore
import ServiceLifecycle

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
