import CoreMetrics
import Foundation
import Prometheus

/// The gateway's instruments (swift-metrics over a Prometheus registry), served at `/metrics`.
public struct GatewayMetrics: Sendable {
    /// Where the instruments live; `emit` renders it in Prometheus text format.
    public let registry: PrometheusCollectorRegistry
    let enqueued: CoreMetrics.Counter
    let duplicates: CoreMetrics.Counter
    let refusedForBound: CoreMetrics.Counter
    let eventRecords: CoreMetrics.Counter
    /// Event notifications read (webhook POSTs, SQS messages); records per notification is the ratio.
    let eventNotifications: CoreMetrics.Counter
    private let outcomes: [String: [String: CoreMetrics.Counter]]
    private let durations: [String: CoreMetrics.Timer]
    private let waits: [String: CoreMetrics.Timer]
    private let depths: [String: (waiting: CoreMetrics.Gauge, running: CoreMetrics.Gauge)]

    static let outcomeNames = ["succeeded", "failed", "dead"]

    public init(functions: [String], registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        let factory = PrometheusMetricsFactory(registry: registry)
        enqueued = CoreMetrics.Counter(label: "cinescale_gateway_invocations_enqueued_total", factory: factory)
        duplicates = CoreMetrics.Counter(label: "cinescale_gateway_event_duplicates_total", factory: factory)
        refusedForBound = CoreMetrics.Counter(label: "cinescale_gateway_invocations_refused_total", factory: factory)
        eventRecords = CoreMetrics.Counter(label: "cinescale_gateway_event_records_total", factory: factory)
        eventNotifications = CoreMetrics.Counter(label: "cinescale_gateway_event_notifications_total", factory: factory)
        var outcomes: [String: [String: CoreMetrics.Counter]] = [:]
        var durations: [String: CoreMetrics.Timer] = [:]
        var waits: [String: CoreMetrics.Timer] = [:]
        var depths: [String: (CoreMetrics.Gauge, CoreMetrics.Gauge)] = [:]
        for function in functions {
            for outcome in Self.outcomeNames {
                outcomes[function, default: [:]][outcome] = CoreMetrics.Counter(
                    label: "cinescale_gateway_async_attempts_total",
                    dimensions: [("function", function), ("outcome", outcome)], factory: factory)
            }
            durations[function] = CoreMetrics.Timer(
                label: "cinescale_gateway_async_attempt_duration_seconds", dimensions: [("function", function)],
                factory: factory)
            waits[function] = CoreMetrics.Timer(
                label: "cinescale_gateway_async_queue_wait_seconds", dimensions: [("function", function)],
                factory: factory)
            depths[function] = (
                CoreMetrics.Gauge(
                    label: "cinescale_gateway_queue_depth", dimensions: [("function", function), ("state", "waiting")],
                    factory: factory),
                CoreMetrics.Gauge(
                    label: "cinescale_gateway_queue_depth", dimensions: [("function", function), ("state", "running")],
                    factory: factory)
            )
        }
        self.outcomes = outcomes
        self.durations = durations
        self.waits = waits
        self.depths = depths
    }

    func outcome(function: String, _ outcome: String, duration: Double? = nil) {
        outcomes[function]?[outcome]?.increment()
        if let duration { durations[function]?.recordNanoseconds(Int64(duration * 1e9)) }
    }

    func started(function: String, waited: Double) {
        waits[function]?.recordNanoseconds(Int64(max(0, waited) * 1e9))
    }

    func depth(function: String, waiting: Int, running: Int) {
        depths[function]?.waiting.record(waiting)
        depths[function]?.running.record(running)
    }

    /// The registry in Prometheus text exposition format.
    public func emit() -> [UInt8] { registry.emitToBuffer() }
}
