import Foundation
import Gateway
import Testing

/// The real aws-cli (from the project venv) against a live gateway: botocore signs Lambda requests without
/// `x-amz-content-sha256` and double-encodes the path, which the store's S3 clients never do.
@Suite(
    "aws-cli", .serialized, .enabled(if: AWSCLI.path != nil && Python.available, "needs .venv/bin/aws and awslambdaric")
)
struct AWSCLITests {
    @Test func invokeListAndGet() async throws {
        let dir = try HandlerDirectory()
        try await LiveGateway.run([dir.function("echo")]) { gw in
            let out = dir.path + "/out.json"
            let invoked = try await AWSCLI.run(
                port: gw.port,
                ["lambda", "invoke", "--function-name", "echo", "--payload", "{\"via\":\"aws-cli\"}", out])
            #expect(invoked.status == 0, "\(invoked.stderr)")
            #expect(invoked.stdout.contains("\"StatusCode\": 200"))
            #expect(invoked.stdout.contains("$LATEST"))
            #expect(try String(contentsOfFile: out, encoding: .utf8).contains("aws-cli"))

            let byARN = try await AWSCLI.run(
                port: gw.port,
                [
                    "lambda", "invoke", "--function-name", "arn:aws:lambda:us-east-1:000000000000:function:echo",
                    "--payload", "{\"action\":\"fail\"}", out,
                ])
            #expect(byARN.status == 0, "\(byARN.stderr)")
            #expect(byARN.stdout.contains("\"FunctionError\": \"Unhandled\""))

            let list = try await AWSCLI.run(port: gw.port, ["lambda", "list-functions"])
            #expect(list.status == 0, "\(list.stderr)")
            #expect(list.stdout.contains("\"FunctionName\": \"echo\""))

            let get = try await AWSCLI.run(port: gw.port, ["lambda", "get-function", "--function-name", "echo"])
            #expect(get.status == 0, "\(get.stderr)")
            #expect(get.stdout.contains("arn:aws:lambda:us-east-1:000000000000:function:echo"))

            let missing = try await AWSCLI.run(
                port: gw.port, ["lambda", "invoke", "--function-name", "nope", out])
            #expect(missing.status != 0)
            #expect(missing.stderr.contains("ResourceNotFoundException"))
            #expect(missing.stderr.contains("Function not found"))

            let badKey = try await AWSCLI.run(
                port: gw.port, ["lambda", "list-functions"], secret: "not-the-secret")
            #expect(badKey.status != 0)
            #expect(badKey.stderr.contains("InvalidSignatureException"))
        }
    }
}

enum AWSCLI {
    static let path: String? = Python.path.map {
        URL(fileURLWithPath: $0).deletingLastPathComponent().appendingPathComponent("aws").path
    }.flatMap { FileManager.default.isExecutableFile(atPath: $0) ? $0 : nil }

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs aws-cli on a thread of its own: waiting for it on the test process's cooperative pool (one thread
    /// per core) for seconds starved the tests running beside it.
    static func run(port: Int, _ arguments: [String], secret: String? = nil) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try runBlocking(port: port, arguments, secret: secret) }) }
                .start()
        }
    }

    private static func runBlocking(port: Int, _ arguments: [String], secret: String?) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path!)
        process.arguments = arguments + ["--endpoint-url", "http://127.0.0.1:\(port)"]
        process.environment = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
            "AWS_ACCESS_KEY_ID": LiveGateway.credentials.accessKeyId,
            "AWS_SECRET_ACCESS_KEY": secret ?? LiveGateway.credentials.secretAccessKey,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true", "AWS_PAGER": "",
            "AWS_MAX_ATTEMPTS": "1",
        ]
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        // Waited for with a semaphore: waitUntilExit polls a run loop, which spins on a thread without one.
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        exited.wait()
        return Output(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }
}
