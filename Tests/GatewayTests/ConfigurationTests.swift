import Foundation
import NIOCore
import PostgresInvocationQueue
import Testing

@testable import Gateway

@Suite("Configuration")
struct ConfigurationTests {
    @Test func parsesTheDocumentedFile() throws {
        let yaml = """
            region: eu-west-1
            functions:
              echo:
                command: [".build/debug/hello", "echo"]
                environment: {LOG_LEVEL: info, RETRIES: 3}
                timeout: 3
                concurrency: 2
                memory: 256
                maxPayloadBytes: 6291456
                maxQueued: 10
                handler: app.handler
                nice: 10
                idle: true
              probe:
                command: ["python3", "-m", "awslambdaric", "probe.handler"]
                timeout: 1.5
                workingDirectory: fns/probe
            """
        let configuration = try GatewayConfiguration.load(
            yaml: yaml, baseDirectory: "/srv/app", environment: ["PATH": "/usr/bin"])
        #expect(configuration.region == "eu-west-1")
        #expect(configuration.functions.map(\.name) == ["echo", "probe"])
        let echo = configuration.functions[0]
        #expect(echo.command == ["/srv/app/.build/debug/hello", "echo"])
        #expect(echo.environment == ["LOG_LEVEL": "info", "RETRIES": "3"])
        #expect(echo.timeout == .seconds(3))
        #expect(echo.concurrency == 2)
        #expect(echo.memoryMB == 256)
        #expect(echo.maxQueued == 10)
        #expect(echo.handler == "app.handler")
        #expect(echo.nice == 10 && echo.idle)
        #expect(echo.workingDirectory == "/srv/app")
        let probe = configuration.functions[1]
        #expect(probe.command[0] == "python3")
        #expect(probe.timeout == .milliseconds(1500))
        #expect(probe.concurrency == 1)
        #expect(probe.maxPayloadBytes == 6_291_456)
        #expect(probe.maxQueued == 1000)
        #expect(probe.nice == 0 && !probe.idle)
        #expect(probe.workingDirectory == "/srv/app/fns/probe")
        #expect(configuration.inheritedEnvironment == ["PATH": "/usr/bin"])
    }

    @Test func parsesTriggersRetryAndQueue() throws {
        let yaml = """
            functions:
              probe:
                command: [probe]
                retry: {maxAttempts: 5, backoff: 0.5, maxBackoff: 30, maxEventAge: 600}
            triggers:
              - function: probe
                bucket: ingest
                prefix: uploads/
                suffix: .mp4
              - {function: probe, bucket: media, events: "s3:ObjectRemoved:*"}
            events: {token: s3cr3t}
            queue: {path: data/q.sqlite, maxPending: 50, retention: 3600}
            """
        let c = try GatewayConfiguration.load(yaml: yaml, baseDirectory: "/srv/app")
        #expect(
            c.functions[0].retry
                == RetryPolicy(
                    maxAttempts: 5, initialBackoff: .milliseconds(500), maxBackoff: .seconds(30),
                    maxEventAge: .seconds(600)))
        #expect(
            c.triggers == [
                TriggerRule(function: "probe", bucket: "ingest", prefix: "uploads/", suffix: ".mp4"),
                TriggerRule(function: "probe", bucket: "media", events: ["s3:ObjectRemoved:*"]),
            ])
        #expect(c.eventToken == "s3cr3t")
        #expect(
            c.queue == QueueConfiguration(path: "/srv/app/data/q.sqlite", maxPending: 50, retention: .seconds(3600)))
        let upload = c.triggers[0]
        #expect(upload.matches(bucket: "ingest", eventName: "s3:ObjectCreated:Put", key: "uploads/a.mp4"))
        #expect(
            upload.matches(bucket: "ingest", eventName: "ObjectCreated:CompleteMultipartUpload", key: "uploads/a.mp4"))
        #expect(!upload.matches(bucket: "ingest", eventName: "ObjectRemoved:Delete", key: "uploads/a.mp4"))
        #expect(!upload.matches(bucket: "ingest", eventName: "ObjectCreated:Put", key: "uploads/a.mov"))
        #expect(!upload.matches(bucket: "media", eventName: "ObjectCreated:Put", key: "uploads/a.mp4"))
        #expect(c.triggers[1].matches(bucket: "media", eventName: "ObjectRemoved:Delete", key: "x"))
    }

    @Test func retryDelaysGrowExponentiallyWithBoundedJitter() {
        let policy = RetryPolicy(maxAttempts: 10, initialBackoff: .seconds(1), maxBackoff: .seconds(8))
        #expect(policy.delay(after: 1, random: 1) == .seconds(1))
        #expect(policy.delay(after: 1, random: 0) == .milliseconds(500))
        #expect(policy.delay(after: 3, random: 1) == .seconds(4))
        #expect(policy.delay(after: 9, random: 1) == .seconds(8))
        for _ in 0..<100 {
            let d = policy.delay(after: 2)
            #expect(d >= .seconds(1) && d <= .seconds(2))
        }
    }

    @Test(arguments: [
        ("functions:\n  echo:\n    timeout: 3\n", "functions.echo.command: is required"),
        ("functions:\n  echo:\n    command: [x]\n    timeout: -1\n", "functions.echo.timeout:"),
        ("functions:\n  echo:\n    command: [x]\n    concurrency: two\n", "functions.echo.concurrency:"),
        ("functions:\n  echo:\n    command: [x]\n    timout: 3\n", "functions.echo.timout: unknown field"),
        ("functions:\n  echo:\n    command: [x]\n    idle: maybe\n", "functions.echo.idle: expected true or false"),
        ("functions:\n  echo:\n    command: []\n", "functions.echo.command: must name an executable"),
        ("functions:\n  'bad name':\n    command: [x]\n", "functions.bad name: invalid function name"),
        ("functions:\n  echo:\n    command: [x]\n    environment: [A]\n", "functions.echo.environment:"),
        ("functions:\n  echo:\n    command: [x]\n    maxQueued: -1\n", "functions.echo.maxQueued:"),
        ("functions:\n  echo:\n    command: [x]\n    nice: 20\n", "functions.echo.nice: must be between 0 and 19"),
        ("functions: [a, b]\n", "functions: expected a mapping"),
        ("funtions: {}\n", "funtions: unknown field"),
        ("functions:\n  echo:\n    command: [x]\n    retry: {maxAttempts: 0}\n", "functions.echo.retry.maxAttempts:"),
        ("functions:\n  echo:\n    command: [x]\n    retry: {tries: 2}\n", "functions.echo.retry.tries: unknown field"),
        (
            "functions:\n  echo:\n    command: [x]\ntriggers:\n  - {function: nope, bucket: b}\n",
            "triggers[0].function: no function named 'nope'"
        ),
        ("functions:\n  echo:\n    command: [x]\ntriggers:\n  - {function: echo}\n", "triggers[0].bucket: is required"),
        (
            "functions:\n  echo:\n    command: [x]\ntriggers:\n  - {function: echo, bucket: b, events: [Put]}\n",
            "triggers[0].events:"
        ),
        ("functions:\n  echo:\n    command: [x]\nqueue: {maxPending: 0}\n", "queue.maxPending:"),
        (
            "functions:\n  echo:\n    command: [x]\nqueue: {postgres: 'mysql://u@h/d'}\n",
            "queue.postgres: expected postgres://"
        ),
        ("functions:\n  echo:\n    command: [x]\nqueue: {postgres: 'postgres://h/d'}\n", "names no user"),
        (
            "functions:\n  echo:\n    command: [x]\nqueue: {postgres: 'postgres://u@h/d?sslmode=maybe'}\n",
            "unknown sslmode"
        ),
        (
            "functions:\n  echo:\n    command: [x]\nqueue: {postgres: 'postgres://u:${NOPE}@h/d'}\n",
            "${NOPE}, which is not set"
        ),
        ("functions:\n  echo:\n    command: [x]\nqueue: {postgres: 'postgres://u@h/d', lease: 0.5}\n", "queue.lease:"),
        ("functions: {echo: {command: [x]\n", "not valid YAML"),
    ])
    func reportsTheFunctionAndField(yaml: String, expected: String) {
        let error = #expect(throws: GatewayError.self) {
            _ = try GatewayConfiguration.load(yaml: yaml, baseDirectory: "/tmp")
        }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.description.contains(expected) == true, "\(error?.description ?? "no error")")
    }

    @Test func aSharedQueueIsAPostgresURLWithItsPasswordFromTheEnvironment() throws {
        let yaml = """
            functions:
              echo:
                command: [x]
            queue:
              postgres: postgres://cinescale:${PGPASSWORD}@db.internal:6432/videos?sslmode=require
              lease: 15
              maxConnections: 4
            """
        let configuration = try GatewayConfiguration.load(
            yaml: yaml, baseDirectory: "/srv", environment: ["PGPASSWORD": "p@ss/word"])
        #expect(configuration.queue.lease == .seconds(15))
        let postgres = try #require(try configuration.queue.postgresConfiguration())
        #expect(postgres.host == "db.internal" && postgres.port == 6432 && postgres.database == "videos")
        #expect(postgres.user == "cinescale" && postgres.password == "p@ss/word" && postgres.tls == .require)
        #expect(postgres.leaseDuration == .seconds(15) && postgres.maxConnections == 4)
        #expect(!postgres.owner.isEmpty)
    }

    @Test func secretsArePassedOnOnlyWhenNamed() throws {
        let yaml = """
            functions:
              probe:
                command: [probe]
                environment: {AWS_SECRET_ACCESS_KEY: "${STORE_SECRET}", MEDIA_BUCKET: media, LITERAL: "$HOME"}
            """
        let environment = ["STORE_SECRET": "s3cr3t", "AWS_SECRET_ACCESS_KEY": "not-this-one"]
        let configuration = try GatewayConfiguration.load(yaml: yaml, baseDirectory: "/srv", environment: environment)
        #expect(
            configuration.functions[0].environment == [
                "AWS_SECRET_ACCESS_KEY": "s3cr3t", "MEDIA_BUCKET": "media", "LITERAL": "$HOME",
            ])
        do {
            _ = try GatewayConfiguration.load(yaml: yaml, baseDirectory: "/srv", environment: [:])
            Issue.record("a missing ${STORE_SECRET} was accepted")
        } catch {
            #expect(error.message.contains("${STORE_SECRET}"))
        }
    }

    @Test func emptyFunctionsIsAllowed() throws {
        let configuration = try GatewayConfiguration.load(yaml: "functions: {}\n", baseDirectory: "/tmp")
        #expect(configuration.functions.isEmpty)
    }
}

@Suite("JSON validation")
struct JSONValidatorTests {
    static func valid(_ s: String) -> Bool {
        Array(s.utf8).withUnsafeBytes { (try? JSONValidator.validate($0)) != nil }
    }

    @Test func acceptsJSON() {
        for s in [
            "{}", "[]", "0", "-0.5e+10", "\"x\"", "true", "null",
            " { \"a\" : [1, 2, {\"b\": null}], \"c\": \"\\u00e9\\n\" } ",
            "[[[[]]]]", "\"héllo ✓ 😀\"", "{\"a\":{\"b\":{\"c\":[true,false]}}}",
        ] {
            #expect(Self.valid(s), "\(s)")
        }
    }

    @Test func rejectsNonJSON() {
        for s in [
            "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{a:1}", "'x'", "01", "1.", ".5", "-", "tru", "nul", "[1 2]",
            "{\"a\" 1}", "\"unterminated", "\"\\x\"", "\"\u{01}\"", "{} {}", "[\"\\u12\"]", "NaN",
        ] {
            #expect(!Self.valid(s), "\(s)")
        }
        #expect(!([0x22, 0xFF, 0x22] as [UInt8]).withUnsafeBytes { (try? JSONValidator.validate($0)) != nil })
        #expect(
            !([0x22, 0xED, 0xA0, 0x80, 0x22] as [UInt8]).withUnsafeBytes { (try? JSONValidator.validate($0)) != nil })
    }

    @Test func deepNestingDoesNotCrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(!Self.valid(deep))
        let ok = String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)
        #expect(Self.valid(ok))
    }
}

@Suite("Formats")
struct FormatTests {
    @Test func exitDescriptionsMatchLambda() {
        #expect(ProcessExit(waitStatus: 1 << 8).description == "exit status 1")
        #expect(ProcessExit(waitStatus: 9).description == "signal: killed")
        #expect(ProcessExit(waitStatus: 6 | 0x80).description == "signal: aborted (core dumped)")
        #expect(ProcessExit(waitStatus: 15).description == "signal: terminated")
    }

    @Test func identifiers() {
        let id = LambdaFormat.requestID()
        #expect(id.wholeMatch(of: /[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/) != nil)
        #expect(LambdaFormat.timestamp(epochMilliseconds: 1_714_564_800_123) == "2024-05-01T12:00:00.123Z")
        #expect(LambdaFormat.seconds(.seconds(3)) == "3.00")
        #expect(LambdaFormat.seconds(.milliseconds(1500)) == "1.50")
        #expect(LambdaFormat.quote("a\"b\\\n\u{01}") == "\"a\\\"b\\\\\\n\\u0001\"")
    }

    @Test func functionNamesInPaths() {
        #expect(InvokeAPI.parseName("echo") == ("echo", nil))
        #expect(InvokeAPI.parseName("echo:$LATEST") == ("echo", "$LATEST"))
        #expect(InvokeAPI.parseName("arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Aecho") == ("echo", nil))
        #expect(InvokeAPI.parseName("000000000000:function:echo:1") == ("echo", "1"))
    }
}
