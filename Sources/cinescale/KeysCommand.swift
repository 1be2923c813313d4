import APIKeys
import ArgumentParser
import Foundation
import Gateway
import InvocationQueue
import Logging
import PostgresAPIKeys
import PostgresInvocationQueue
import ServiceLifecycle
import Synchronization
import WireFormat

/// Where the API keys live: beside the invocation queue (its SQLite file, or its PostgreSQL database shared by
/// every gateway), so whoever shares the queue shares the keys.
enum KeyStores {
    /// The store for `queue`, and the service that must run while it is used (PostgreSQL's connection pool).
    static func open(_ queue: QueueConfiguration, logger: Logger) throws
        -> (store: any APIKeyStore & PlaybackKeyStore & WebhookStore, service: (any Service)?)
    {
        if let url = queue.postgres {
            let store = PostgresAPIKeyStore(configuration: try PostgresQueueConfiguration(url: url), logger: logger)
            return (store, store)
        }
        guard let path = queue.path else { throw ValidationError("the queue has no SQLite path and no PostgreSQL URL") }
        return (try SQLiteAPIKeyStore(path: path), nil)
    }
}

/// `cinescale keys create|list|revoke`: the operator's view of the API keys of every tenant, straight on the
/// database (the gateways need not run).
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "Create, list and revoke API keys (any tenant), on the gateway's database.",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Database: ParsableArguments {
        @Option(help: "The gateway's functions file: its queue (SQLite path or PostgreSQL URL) holds the keys.")
        var config: String?

        @Option(help: "A `cinescale dev` data directory (its gateway/queue.sqlite).")
        var dataDir: String?

        @Option(help: "The database itself: a SQLite file, or a postgres:// URL.")
        var database: String?

        func queue() throws -> QueueConfiguration {
            let environment = ProcessInfo.processInfo.environment
            switch (config, dataDir, database) {
            case (let file?, nil, nil):
                let yaml = try String(contentsOfFile: file, encoding: .utf8)
                let directory = URL(fileURLWithPath: file).deletingLastPathComponent().path
                var queue = try GatewayConfiguration.load(
                    yaml: yaml, baseDirectory: directory, environment: environment
                ).queue
                if queue.path == nil, queue.postgres == nil {
                    let data = environment["CINESCALE_GATEWAY_DATA_DIR"] ?? "./.data/gateway"
                    queue.path = URL(fileURLWithPath: data).appendingPathComponent("queue.sqlite").path
                }
                return queue
            case (nil, let directory?, nil):
                return QueueConfiguration(
                    path: URL(fileURLWithPath: directory).appendingPathComponent("gateway/queue.sqlite").path)
            case (nil, nil, let database?):
                return database.hasPrefix("postgres")
                    ? QueueConfiguration(postgres: database) : QueueConfiguration(path: database)
            default:
                throw ValidationError("give one of --config, --data-dir and --database")
            }
        }

        /// Runs `body` on the store (with its connection pool running, for PostgreSQL) and returns its result.
        func with<T: Sendable>(_ body: @escaping @Sendable (any APIKeyStore) async throws -> T) async throws -> T {
            let result = Mutex<T?>(nil)
            try await run { store in
                let value = try await body(store)
                result.withLock { $0 = value }
            }
            guard let value = result.withLock({ $0 }) else { throw ValidationError("the database connection ended") }
            return value
        }

        // Not optimised: Swift 6.3.1's optimiser crashes (signal 11 in LLVM, "While splitting coroutine",
        // emitSetAndGetSwiftErrorValueAround) on this function specialised for its callers' closures, in release
        // builds. It runs once per command.
        @_optimize(none)
        private func run(_ body: @escaping @Sendable (any APIKeyStore) async throws -> Void) async throws {
            var logger = Logger(label: "cinescale.keys")
            logger.logLevel = .warning
            let (store, service) = try KeyStores.open(try queue(), logger: logger)
            guard let service else { return try await body(store) }
            try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await service.run()
                    return false
                }
                group.addTask {
                    try await body(store)
                    return true
                }
                while let done = try await group.next() {
                    if done {
                        group.cancelAll()
                        return
                    }
                }
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a key; prints its token once.")

        @Option(help: "The tenant (created with its first key): lowercase letters, digits, '-'.")
        var tenant: String

        @Option(help: "Scopes, comma-separated: upload, read, delete, admin.")
        var scopes: String = "admin"

        @Option(help: "A name to tell the key by.")
        var name: String = ""

        @Flag(help: "Print the key as JSON (with its token).")
        var json = false

        @OptionGroup var database: Database

        func run() async throws {
            let scopes = try APIKeyRules.scopes(self.scopes)
            let (tenant, name) = (self.tenant, self.name)
            let created = try await database.with { try await $0.create(tenant: tenant, name: name, scopes: scopes) }
            if json {
                print(
                    String(
                        decoding: try KeysCommand.encoder.encode(Created(key: created.key, token: created.token)),
                        as: UTF8.self))
            } else {
                print(
                    "key \(created.key.id) of tenant \(created.key.tenant) (\(created.key.scopes.map(\.rawValue).joined(separator: ",")))"
                )
                print(created.token)
            }
        }

        struct Created: Encodable {
            var key: APIKey
            var token: String
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the keys (never their tokens).")

        @Option(help: "Only this tenant's keys.")
        var tenant: String?

        @Flag(help: "JSON.")
        var json = false

        @OptionGroup var database: Database

        func run() async throws {
            let tenant = self.tenant
            let keys = try await database.with { try await $0.list(tenant: tenant) }
            if json {
                print(String(decoding: try KeysCommand.encoder.encode(keys), as: UTF8.self))
                return
            }
            for key in keys {
                let state = key.revokedAt.map { "revoked \(KeysCommand.iso($0))" } ?? "active"
                print(
                    "\(key.id)  \(key.tenant)  \(key.scopes.map(\.rawValue).joined(separator: ","))  \(state)  \(key.name)"
                )
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a key: it stops working at once on every gateway.")

        @Argument(help: "The key's id (k…).")
        var id: String

        @OptionGroup var database: Database

        func run() async throws {
            let id = self.id
            guard try await database.with({ try await $0.revoke(id: id, tenant: nil) }) else {
                throw ValidationError("there is no key \(id)")
            }
            print("revoked \(id)")
        }
    }

    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }

    static func iso(_ date: Date) -> String { ISO8601Date.format(date) }
}
