import AsyncHTTPClient
import Foundation
import Gateway
import NIOCore
import Testing

/// The Runtime API driven by the test itself, standing in for the runtime of a worker process (`sleep`,
/// which only holds the slot).
@Suite("Runtime API")
struct RuntimeAPITests {
    static func manual(
        _ name: String = "manual", timeout: Duration = .seconds(3), maxResponseBytes: Int = 6_291_456
    ) -> FunctionConfiguration {
        FunctionConfiguration(
            name: name, command: ["sleep", "60"], timeout: timeout, maxResponseBytes: maxResponseBytes)
    }

    struct RuntimeReply: Sendable {
        var status: Int
        var headers: [String: String]
        var body: String
    }

    static func call(
        _ port: Int, _ method: String, _ path: String, body: String? = nil, headers: [String: String] = [:]
    )
        async throws -> RuntimeReply
    {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/2018-06-01/runtime/\(path)")
        request.method = .init(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        var replyHeaders: [String: String] = [:]
        for header in response.headers { replyHeaders[header.name.lowercased()] = header.value }
        return RuntimeReply(status: Int(response.status.code), headers: replyHeaders, body: String(buffer: bytes))
    }

    static func runtimePort(_ gw: LiveGateway, _ function: String = "manual") async throws -> Int {
        let status = try await gw.waitFor(function, "a started worker") { $0.workers[0].pid != nil }
        return try #require(status.workers[0].runtimeAPIPort)
    }

    @Test func nextCarriesTheLambdaHeadersAndResponseCompletes() async throws {
        try await LiveGateway.run([Self.manual()]) { gw in
            let port = try await Self.runtimePort(gw)
            async let result = gw.service.invoke(function: "manual", payload: ByteBuffer(string: "{\"k\":1}"))
            let before = Int64(Date().timeIntervalSince1970 * 1000)
            let next = try await Self.call(port, "GET", "invocation/next")
            let after = Int64(Date().timeIntervalSince1970 * 1000)
            #expect(next.status == 200)
            #expect(next.body == "{\"k\":1}")
            #expect(next.headers["content-type"] == "application/json")
            let id = try #require(next.headers["lambda-runtime-aws-request-id"])
            #expect(id.count == 36)
            let deadline = try #require(next.headers["lambda-runtime-deadline-ms"].flatMap { Int64($0) })
            // The deadline is the 3 s timeout counted from when the worker took the invocation.
            #expect(deadline >= before + 3000 - 5 && deadline <= after + 3000 + 5)
            #expect(
                next.headers["lambda-runtime-invoked-function-arn"]
                    == "arn:aws:lambda:us-east-1:000000000000:function:manual")
            let trace = try #require(next.headers["lambda-runtime-trace-id"])
            #expect(trace.wholeMatch(of: /Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0/) != nil)
            #expect(gw.status("manual").workers[0].state == .busy)

            let unknown = try await Self.call(port, "POST", "invocation/not-a-request/response", body: "{}")
            #expect(unknown.status == 400)

            let posted = try await Self.call(port, "POST", "invocation/\(id)/response", body: "{\"ok\":true}")
            #expect(posted.status == 202)
            #expect(posted.body == "{\"status\":\"OK\"}")
            let r = try await result
            #expect(r.requestID == id)
            #expect(String(buffer: r.payload) == "{\"ok\":true}")
            #expect(!r.isError)

            let again = try await Self.call(port, "POST", "invocation/\(id)/response", body: "{}")
            #expect(again.status == 400)
        }
    }

    @Test func errorPostWithHeaderOnly() async throws {
        try await LiveGateway.run([Self.manual()]) { gw in
            let port = try await Self.runtimePort(gw)
            async let result = gw.service.invoke(function: "manual", payload: ByteBuffer(string: "{}"))
            let next = try await Self.call(port, "GET", "invocation/next")
            let id = try #require(next.headers["lambda-runtime-aws-request-id"])
            let posted = try await Self.call(
                port, "POST", "invocation/\(id)/error", body: "",
                headers: ["Lambda-Runtime-Function-Error-Type": "Custom.Failure"])
            #expect(posted.status == 202)
            let r = try await result
            #expect(r.functionError == "Unhandled")
            #expect(r.errorType == "Custom.Failure")
        }
    }

    @Test func oversizedResponseFailsTheInvocation() async throws {
        try await LiveGateway.run([Self.manual(maxResponseBytes: 64)]) { gw in
            let port = try await Self.runtimePort(gw)
            async let result = gw.service.invoke(function: "manual", payload: ByteBuffer(string: "{}"))
            let next = try await Self.call(port, "GET", "invocation/next")
            let id = try #require(next.headers["lambda-runtime-aws-request-id"])
            let posted = try await Self.call(
                port, "POST", "invocation/\(id)/response", body: "\"" + String(repeating: "x", count: 100) + "\"")
            #expect(posted.status == 413)
            let r = try await result
            #expect(r.errorType == "Function.ResponseSizeTooLarge")
        }
    }

    @Test func timeoutKillsTheWorkerAndStartsAnother() async throws {
        try await LiveGateway.run([Self.manual(timeout: .milliseconds(300))]) { gw in
            let port = try await Self.runtimePort(gw)
            let firstPid = try #require(gw.status("manual").workers[0].pid)
            async let result = gw.service.invoke(function: "manual", payload: ByteBuffer(string: "{}"))
            let next = try await Self.call(port, "GET", "invocation/next")
            let id = try #require(next.headers["lambda-runtime-aws-request-id"])
            let r = try await result
            #expect(r.errorType == "Runtime.TimeoutError")
            let message = String(buffer: r.payload)
            #expect(message.contains("\(id) Task timed out after 0.30 seconds"))
            let status = try await gw.waitFor("manual", "a replacement") {
                $0.workers[0].pid != nil && $0.workers[0].pid != firstPid
            }
            #expect(status.workers[0].restarts == 1)
            #expect(status.workers[0].lastExit == "signal: killed")
            #expect(processGroupIsGone(firstPid))
            // A late answer for the timed-out request is refused.
            let late = try? await Self.call(port, "POST", "invocation/\(id)/response", body: "{}")
            #expect(late?.status == 400)
        }
    }

    @Test func initErrorIsRecorded() async throws {
        try await LiveGateway.run([Self.manual()]) { gw in
            let port = try await Self.runtimePort(gw)
            let posted = try await Self.call(
                port, "POST", "init/error",
                body:
                    "{\"errorMessage\":\"cannot load\",\"errorType\":\"Runtime.ImportModuleError\",\"stackTrace\":[]}",
                headers: ["Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"])
            #expect(posted.status == 202)
        }
    }
}
