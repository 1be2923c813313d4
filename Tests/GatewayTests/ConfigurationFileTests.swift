import Foundation
import Testing

@testable import Gateway

/// The gateway file's loader: the `${NAME}` pass (where it applies, in which form), the shapes the decoders
/// refuse, and `DecodingError`s written as field paths.
@Suite("Configuration file")
struct ConfigurationFileTests {
    func message(_ yaml: String, environment: [String: String] = [:]) -> String {
        do {
            _ = try GatewayConfiguration.load(yaml: yaml, baseDirectory: "/srv", environment: environment)
            return "loaded"
        } catch {
            #expect(error.code == .invalidConfiguration)
            return error.message
        }
    }

    @Test(arguments: [
        ("", "(top level): expected a mapping with a 'functions' key"),
        ("- a\n- b\n", "(top level): expected a mapping with a 'functions' key"),
        (
            "functions:\n  echo:\n    command: [x]\n    timeout: [1]\n",
            "functions.echo.timeout: expected a positive number of seconds, got a list"
        ),
        (
            "functions:\n  echo:\n    command: [x]\n    concurrency: {a: 1}\n",
            "functions.echo.concurrency: expected an integer ≥ 1, got a mapping"
        ),
        ("functions:\n  echo:\n    command: [x, [y]]\n", "functions.echo.command: expected a list of strings"),
        (
            "functions:\n  echo:\n    command: {a: b}\n",
            "functions.echo.command: expected a list: [executable, arguments...]"
        ),
        (
            "functions:\n  echo:\n    command: [x]\n    environment: {A: [1]}\n",
            "functions.echo.environment: the value of A must be a scalar"
        ),
        ("functions:\n  echo: [x]\n", "functions.echo: expected a mapping of settings"),
        (
            "functions:\n  echo:\n    command: [x]\n    retry: 3\n",
            "functions.echo.retry: expected a mapping (maxAttempts, backoff, maxBackoff, maxEventAge)"
        ),
        (
            "functions:\n  echo:\n    command: [x]\ntriggers: {function: echo}\n",
            "triggers: expected a list of {function, bucket, events, prefix, suffix}"
        ),
        ("functions:\n  echo:\n    command: [x]\ntriggers:\n  - echo\n", "triggers[0]: expected a mapping"),
        (
            "functions:\n  echo:\n    command: [x]\ntriggers:\n  - {function: echo, bucket: b, when: now}\n",
            "triggers[0].when: unknown field (expected function, bucket, events, prefix or suffix)"
        ),
        (
            "functions:\n  echo:\n    command: [x]\nevents: {secret: x}\n",
            "events.secret: unknown field (expected token)"
        ),
        (
            "functions:\n  echo:\n    command: [x]\nqueue: [a]\n",
            "queue: expected a mapping (path or postgres, maxPending, retention)"
        ),
        (
            "functions:\n  echo:\n    command: [x]\nqueue: {postgres: 'postgres://u:${P@h/d'}\n",
            "queue.postgres: unterminated ${ in the value"
        ),
        ("functions:\n  ? [a]\n  : {command: [x]}\n", "functions: keys must be plain strings"),
        ("region: ''\nfunctions: {}\n", "region: expected a region name"),
    ])
    func namesTheField(yaml: String, expected: String) {
        #expect(message(yaml) == expected)
    }

    @Test func errorsAboutAFunctionCarryItsName() {
        do {
            _ = try GatewayConfiguration.load(
                yaml: "functions:\n  echo:\n    command: [x]\n    environment: {K: '${NOPE}'}\n", baseDirectory: "/srv")
            Issue.record("loaded")
        } catch {
            #expect(
                error.message
                    == "functions.echo.environment: K names ${NOPE}, which is not set in the gateway's environment")
            #expect(error.function == "echo")
        }
    }

    /// `${NAME}` where the file has always allowed it, in the form it has always had there — and nowhere else.
    @Test func substitutionIsWhereAndAsTheFileAllowsIt() throws {
        let yaml = """
            functions:
              echo:
                command: ["${BIN}", "${ARG}"]
                environment: {WHOLE: "${X}", PART: "a-${X}", LITERAL: "$X"}
                handler: "${X}"
            queue:
              postgres: postgres://u:${P}@h/d
            sources: {sqs: [{queueUrl: "${NOT_READ_HERE}"}]}
            """
        let configuration = try GatewayConfiguration.load(
            yaml: yaml, baseDirectory: "/srv", environment: ["X": "x", "P": "p@ss/word", "BIN": "/bin/true"])
        let echo = configuration.functions[0]
        #expect(echo.command == ["${BIN}", "${ARG}"])
        #expect(echo.environment == ["WHOLE": "x", "PART": "a-${X}", "LITERAL": "$X"])
        #expect(echo.handler == "${X}")
        #expect(configuration.queue.postgres == "postgres://u:p%40ss%2Fword@h/d")
    }

    @Test func numbersAndFlagsAreReadAsTheFileWritesThem() throws {
        let yaml = """
            functions:
              echo:
                command: x
                concurrency: "3"
                maxQueued: 1_000
                timeout: 0.25
                memory: 010
            """
        let echo = try GatewayConfiguration.load(yaml: yaml, baseDirectory: "/srv").functions[0]
        #expect(echo.command == ["x"])
        #expect(echo.concurrency == 3 && echo.maxQueued == 1000 && echo.memoryMB == 10)
        #expect(echo.timeout == .milliseconds(250))
        #expect(
            message("functions:\n  echo:\n    command: [x]\n    idle: yes\n")
                == "functions.echo.idle: expected true or false")
    }

    @Test func decodingErrorsAreWrittenAsFieldPaths() {
        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int?
            init(_ string: String) { stringValue = string }
            init(index: Int) { (stringValue, intValue) = ("Index \(index)", index) }
            init?(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        let path: [any CodingKey] = [Key("sources"), Key("sqs"), Key(index: 2)]
        #expect(
            ConfigurationFile.describe(.keyNotFound(Key("queueUrl"), .init(codingPath: path, debugDescription: "")))
                .message == "sources.sqs[2].queueUrl: is required")
        #expect(
            ConfigurationFile.describe(.typeMismatch(Int.self, .init(codingPath: path, debugDescription: "")))
                .message == "sources.sqs[2]: expected a value")
        #expect(
            ConfigurationFile.describe(.dataCorrupted(.init(codingPath: [], debugDescription: "broken"))).message
                == "(top level): broken")
    }
}
