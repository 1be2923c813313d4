import Foundation
import Logging
import PostgresNIO
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A real PostgreSQL server for tests: `CINESCALE_TEST_POSTGRES_URL` when set, otherwise a throwaway cluster
/// started once per test process with `scripts/postgres-throwaway` (Debian's postgresql) and stopped at exit.
/// Every caller gets a database of its own.
public enum TestPostgres {
    private static let server = Mutex<Task<String, any Error>?>(nil)

    /// A URL of a new, empty database.
    public static func freshDatabase() async throws -> String {
        let admin = try await serverURL()
        let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try await run(admin) { connection in
            _ = try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
        }
        var components = URLComponents(string: admin)!
        components.path = "/" + name
        return components.string!
    }

    static var logger: Logger {
        var logger = Logger(label: "test.postgres")
        logger.logLevel = .critical
        return logger
    }

    private static func serverURL() async throws -> String {
        if let url = ProcessInfo.processInfo.environment["CINESCALE_TEST_POSTGRES_URL"], !url.isEmpty { return url }
        let task = server.withLock { current -> Task<String, any Error> in
            if let current { return current }
            // initdb and the server's start take seconds (tens on a loaded machine): waited for on a thread of
            // its own, not on the test process's cooperative pool (one thread per core), which it would starve.
            let task = Task {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String, any Error>) in
                    Thread { continuation.resume(with: Result { try startCluster() }) }.start()
                }
            }
            current = task
            return task
        }
        return try await task.value
    }

    private static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/postgres-throwaway").path
    }

    private static func startCluster() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "cinescale-test-pg-\(UUID().uuidString)"
        ).path
        let port = try freePort()
        // posix_spawn + waitpid: Foundation's Process.waitUntilExit can hang off the main thread on Linux.
        // The cluster stops itself once this process is gone, however it ends.
        let status = try spawnAndWait(
            [script, "start", directory, String(port), String(getpid())], output: directory + ".log")
        guard status == 0 else {
            let log = (try? String(contentsOfFile: directory + ".log", encoding: .utf8)) ?? ""
            throw TestPostgresError(message: "scripts/postgres-throwaway failed (status \(status)): \(log)")
        }
        try? FileManager.default.removeItem(atPath: directory + ".log")
        return "postgres://cinescale@127.0.0.1:\(port)/cinescale?sslmode=disable"
    }

    /// Runs `arguments` with stdout and stderr appended to `output`; returns the exit status.
    static func spawnAndWait(_ arguments: [String], output: String) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, arguments[0], &actions, nil, argv, environ)
        guard spawned == 0 else { throw TestPostgresError(message: "could not run \(arguments[0]): errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        return (status >> 8) & 0xff
    }

    /// Runs `body` on one connection to `url`.
    public static func run<T: Sendable>(
        _ url: String, _ body: @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let components = URLComponents(string: url)!
        let configuration = PostgresConnection.Configuration(
            host: components.host!, port: components.port ?? 5432, username: components.user!,
            password: components.password, database: String(components.path.dropFirst()), tls: .disable)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        do {
            let result = try await body(connection)
            try await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestPostgresError(message: "socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw TestPostgresError(message: "bind() failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

public struct TestPostgresError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// The invocation queue's backends, as test arguments: the tests that state the queue's contract run on both.
public enum QueueBackend: String, CaseIterable, Sendable, CustomStringConvertible {
    case sqlite, postgres
    public var description: String { rawValue }

    /// A fresh PostgreSQL database for `.postgres`, nil for `.sqlite` (its file is per test already).
    public func freshPostgresURL() async throws -> String? {
        self == .postgres ? try await TestPostgres.freshDatabase() : nil
    }
}
