import Foundation
import Gateway
import NIOCore
import SigV4
import Testing

/// Invoke API behaviour that needs no real runtime: the worker is `sleep`, which never calls `/next`.
@Suite("Invoke API (no runtime)")
struct InvokeAPITests {
    static func idle(_ name: String, maxPayloadBytes: Int = FunctionConfiguration.defaultMaxPayloadBytes)
        -> FunctionConfiguration
    {
        FunctionConfiguration(name: name, command: ["sleep", "60"], maxPayloadBytes: maxPayloadBytes)
    }

    @Test func unknownFunctionIs404() async throws {
        try await LiveGateway.run([Self.idle("idle")]) { gw in
            let reply = try await gw.invoke("nope", "{}")
            #expect(reply.status == 404)
            #expect(reply.header("x-amzn-ErrorType") == "ResourceNotFoundException")
            #expect(reply.json?["Type"] as? String == "User")
            #expect(
                reply.json?["message"] as? String
                    == "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope")
            #expect(reply.header("x-amzn-RequestId") != nil)
        }
    }

    @Test func additionalRoutesAreServed() async throws {
        try await LiveGateway.run(
            [Self.idle("idle")],
            additionalRoutes: { router in
                router.get("/extra") { _, _ in "ok" }
            }
        ) { gw in
            let reply = try await gw.send("GET", "/extra", credentials: nil)
            #expect(reply.status == 200)
            #expect(reply.text == "ok")
        }
    }

    @Test func dryRunIs204() async throws {
        try await LiveGateway.run([Self.idle("idle")]) { gw in
            let reply = try await gw.invoke("idle", "{}", type: "DryRun")
            #expect(reply.status == 204)
            let bad = try await gw.invoke("idle", "{}", type: "Sometimes")
            #expect(bad.status == 400)
            #expect(bad.header("x-amzn-ErrorType") == "InvalidParameterValueException")
        }
    }

    @Test func payloadTooLargeIs413() async throws {
        try await LiveGateway.run([Self.idle("small", maxPayloadBytes: 100)]) { gw in
            let payload = "{\"data\":\"" + String(repeating: "x", count: 200) + "\"}"
            let reply = try await gw.invoke("small", payload)
            #expect(reply.status == 413)
            #expect(reply.header("x-amzn-ErrorType") == "RequestEntityTooLargeException")
            #expect((reply.json?["message"] as? String)?.contains("100 bytes") == true)
        }
    }

    @Test func invalidJSONIs400() async throws {
        try await LiveGateway.run([Self.idle("idle")]) { gw in
            for payload in ["not json", "{\"a\":}", "{\"a\":1} trailing"] {
                let reply = try await gw.invoke("idle", payload)
                #expect(reply.status == 400, "\(payload)")
                #expect(reply.header("x-amzn-ErrorType") == "InvalidRequestContentException")
            }
        }
    }

    @Test func badSignaturesAre403() async throws {
        try await LiveGateway.run([Self.idle("idle")]) { gw in
            let wrongSecret = Credentials(accessKeyId: LiveGateway.credentials.accessKeyId, secretAccessKey: "wrong")
            let bad = try await gw.invoke("idle", "{}", credentials: wrongSecret)
            #expect(bad.status == 403)
            #expect(bad.header("x-amzn-ErrorType") == "InvalidSignatureException")
            #expect((bad.json?["message"] as? String)?.contains("signature") == true)

            let unknown = try await gw.invoke(
                "idle", "{}", credentials: Credentials(accessKeyId: "AKIDUNKNOWN", secretAccessKey: "x"))
            #expect(unknown.status == 403)
            #expect(unknown.header("x-amzn-ErrorType") == "UnrecognizedClientException")

            let anonymous = try await gw.invoke("idle", "{}", credentials: nil)
            #expect(anonymous.status == 403)
            #expect(anonymous.header("x-amzn-ErrorType") == "MissingAuthenticationTokenException")

            // A body that is not the one signed.
            let signer = SigV4Signer(credentials: LiveGateway.credentials, region: "us-east-1", service: "lambda")
            let path = "/2015-03-31/functions/idle/invocations"
            let signed = signer.signedHeaders(
                for: SigningRequest(method: "POST", path: path, headers: [("host", "127.0.0.1:\(gw.port)")]),
                payload: .sha256(Array("{\"a\":1}".utf8)), date: Date())
            let tampered = try await gw.send(
                "POST", path, headers: signed, body: Array("{\"a\":2}".utf8), credentials: nil)
            #expect(tampered.status == 403)
            #expect(tampered.header("x-amzn-ErrorType") == "InvalidSignatureException")

            let stale = try await gw.send(
                "GET", "/2015-03-31/functions/", date: Date().addingTimeInterval(-3600))
            #expect(stale.status == 403)
        }
    }

    @Test func listAndGetFunctions() async throws {
        try await LiveGateway.run([Self.idle("beta"), Self.idle("alpha")]) { gw in
            let list = try await gw.send("GET", "/2015-03-31/functions/")
            #expect(list.status == 200)
            let functions = list.json?["Functions"] as? [[String: Any]]
            #expect(functions?.map { $0["FunctionName"] as? String } == ["alpha", "beta"])
            #expect(
                functions?.first?["FunctionArn"] as? String == "arn:aws:lambda:us-east-1:000000000000:function:alpha")
            #expect(functions?.first?["Timeout"] as? Int == 3)

            let get = try await gw.send("GET", "/2015-03-31/functions/beta")
            #expect(get.status == 200)
            let configuration = get.json?["Configuration"] as? [String: Any]
            #expect(configuration?["FunctionName"] as? String == "beta")
            #expect(configuration?["Version"] as? String == "$LATEST")

            let missing = try await gw.send("GET", "/2015-03-31/functions/gamma")
            #expect(missing.status == 404)
            #expect(missing.header("x-amzn-ErrorType") == "ResourceNotFoundException")
        }
    }

    @Test func exitBeforeNextMarksTheFunctionFailing() async throws {
        let function = FunctionConfiguration(name: "dies", command: ["/bin/sh", "-c", "exit 7"])
        try await LiveGateway.run([function]) { gw in
            let status = try await gw.waitFor("dies", "failing") { $0.state == .failing }
            #expect(status.lastInitError == "Runtime exited with error: exit status 7")
            let started = ContinuousClock.now
            let reply = try await gw.invoke("dies", "{}")
            #expect(ContinuousClock.now - started < .seconds(1))
            #expect(reply.status == 200)
            #expect(reply.header("X-Amz-Function-Error") == "Unhandled")
            #expect(reply.json?["errorType"] as? String == "Runtime.ExitError")
            #expect((reply.json?["errorMessage"] as? String)?.contains("exit status 7") == true)
        }
    }

    @Test func missingExecutableIsAnInitFailure() async throws {
        let function = FunctionConfiguration(name: "ghost", command: ["/nonexistent/bootstrap"])
        try await LiveGateway.run([function]) { gw in
            _ = try await gw.waitFor("ghost", "failing") { $0.state == .failing }
            let reply = try await gw.invoke("ghost", "{}")
            #expect(reply.header("X-Amz-Function-Error") == "Unhandled")
            #expect(reply.json?["errorType"] as? String == "Runtime.InvalidEntrypoint")
        }
    }
}
