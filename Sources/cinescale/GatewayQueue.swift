import EventSources
import Gateway
import InvocationQueue
import Logging
import PollState
import PostgresInvocationQueue
import ServiceLifecycle

/// The gateway's durable parts for its configuration, built here in the composition root and handed to
/// `GatewayService`: the invocation queue (SQLite, or PostgreSQL shared with other gateways) and, with the
/// shared queue, the poll sources' seen state in the same database.
struct GatewayQueue {
    let queue: InvocationQueueKind
    /// For `EventSources`; nil: the poll sources keep their seen state in a SQLite file.
    let pollState: (any PollStateStore)?
    /// The shared queue (its connection pool and outcome writes): list it in the command's group before the
    /// gateway and whatever else uses it, so that it stops after them.
    let service: (any Service)?

    static func open(
        _ configuration: GatewayConfiguration, sources: EventSourcesConfiguration = EventSourcesConfiguration(),
        logger: Logger
    ) throws(GatewayError) -> GatewayQueue {
        try configuration.validate()
        if let postgres = try configuration.queue.postgresConfiguration() {
            let queue: PostgresInvocationQueue
            do {
                queue = try PostgresInvocationQueue(configuration: postgres, logger: logger)
            } catch {
                throw GatewayError(.invalidConfiguration, "queue.postgres: \(error.message)")
            }
            // One seen state for the fleet, on the queue's connection pool, unless the file names one of its own.
            let pollState =
                sources.pollStatePath == nil ? PostgresPollState(client: queue.client, logger: logger) : nil
            return GatewayQueue(queue: .shared(queue), pollState: pollState, service: queue)
        }
        guard let path = configuration.queue.path else {
            throw GatewayError(
                .invalidConfiguration, "queue.path: is required (the durable invocation queue's SQLite file)")
        }
        do {
            return GatewayQueue(queue: .local(try SQLiteInvocationQueue(path: path)), pollState: nil, service: nil)
        } catch {
            throw GatewayError(.invalidConfiguration, "queue.path: \(error.description)", underlying: error)
        }
    }
}
