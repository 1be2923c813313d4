import Foundation
import Gateway
import InvocationQueue
import Testing

@testable import EventSources

/// One file, two sections: each reads its own keys of the same file, and the sources are services named as the
/// gateway's parts were.
@Suite("Event sources: the file's two sections")
struct EventSourcesConfigurationTests {
    static let yaml = """
        region: eu-central-1
        functions:
          probe: {command: [probe]}
        triggers:
          - {function: probe, bucket: ingest}
        sources:
          sqs:
            - {queueUrl: "http://127.0.0.1:1/000000000000/events", accessKeyId: k, secretAccessKey: s}
          poll:
            - {endpoint: "http://127.0.0.1:1", bucket: ingest, accessKey: k, secretKey: s}
        """

    @Test func eachSectionReadsItsOwnKeys() throws {
        let file = try ConfigurationFile(yaml: Self.yaml, baseDirectory: "/srv")
        let gateway = try file.decode(GatewayConfiguration.self)
        let sources = try file.decode(EventSourcesConfiguration.self)
        #expect(gateway.functions.map(\.name) == ["probe"] && gateway.region == "eu-central-1")
        #expect(sources.sqs.map(\.queueName) == ["events"] && sources.poll.map(\.bucket) == ["ingest"])
        #expect(sources.sqs[0].region == "eu-central-1" && sources.poll[0].region == "eu-central-1")
        // No `sources:` (or an empty one): no source.
        #expect(try EventSourcesConfiguration.load(yaml: "functions: {}\n", baseDirectory: "/srv").isEmpty)
        #expect(try EventSourcesConfiguration.load(yaml: "functions: {}\nsources:\n", baseDirectory: "/srv").isEmpty)
        #expect(throws: GatewayError.self) {
            try EventSourcesConfiguration.load(yaml: "sources: [sqs]\n", baseDirectory: "/srv")
        }
    }

    @Test func theSourcesAreServicesNamedByQueueAndBucket() throws {
        let dir = try ScratchDirectory()
        let file = try ConfigurationFile(yaml: Self.yaml, baseDirectory: dir.path)
        var gateway = try file.decode(GatewayConfiguration.self)
        gateway.queue.path = dir.path + "/queue.sqlite"
        let service = try GatewayService(
            configuration: gateway,
            invocationQueue: .local(try SQLiteInvocationQueue(path: dir.path + "/queue.sqlite")),
            logger: testLogger)
        let sources = try EventSources(
            configuration: try file.decode(EventSourcesConfiguration.self), queue: gateway.queue,
            sink: service.eventSink, logger: testLogger)
        #expect(sources.services.map { "\($0)" } == ["sqs:events", "poll:ingest"])
        // Among the gateway's parts, after the public server and before pruning.
        let names = service.services(eventSources: sources.services).map { "\($0)" }
        #expect(names == ["runtime", "scheduler", "invoke-api", "sqs:events", "poll:ingest", "prune", "shutdown"])
        // The poll source's seen state beside the queue's file.
        #expect(FileManager.default.fileExists(atPath: dir.path + "/poll.sqlite"))
    }
}
