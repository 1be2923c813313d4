import Foundation
import S3Server
import Testing

/// S3 errors as clients read them, all written by `S3ServerError.response(from:context:)`: the XML document
/// (code, message, details, resource, the request id of the `x-amz-request-id` header), HEAD's
/// `x-amz-error-code`, the CORS preflight's refusals, and the error's own headers.
@Suite("S3 error documents")
struct ErrorDocumentTests {
    static func element(_ name: String, _ text: String) -> String? {
        guard let start = text.range(of: "<\(name)>"), let end = text.range(of: "</\(name)>") else { return nil }
        return String(text[start.upperBound..<end.lowerBound])
    }

    @Test func everyErrorIsOneDocumentCarryingTheRequestsId() async throws {
        try await LiveStore.run(configure: { $0.cors.allowedOrigins = ["https://app.example"] }) { s in
            #expect(try await s.send("PUT", "/media").status == 200)
            let missing = try await s.send("GET", "/media/no/such.mp4")
            #expect(missing.status == 404 && missing.headers["content-type"] == "application/xml")
            let id = try #require(missing.headers["x-amz-request-id"])
            #expect(missing.errorCode == "NoSuchKey" && Self.element("Key", missing.text) == "no/such.mp4")
            #expect(Self.element("Resource", missing.text) == "/media/no/such.mp4")
            #expect(Self.element("RequestId", missing.text) == id && Self.element("HostId", missing.text) == id)
            #expect(Self.element("Message", missing.text) == "The specified key does not exist.")

            let head = try await s.send("HEAD", "/media/no/such.mp4")
            #expect(head.status == 404 && head.body.isEmpty && head.headers["x-amz-error-code"] == "NoSuchKey")

            let bucket = try await s.send("GET", "/nobucket/key")
            #expect(
                bucket.status == 404 && bucket.errorCode == "NoSuchBucket"
                    && Self.element("BucketName", bucket.text) == "nobucket")

            let denied = try await s.send("GET", "/media/no/such.mp4", sign: false)
            #expect(denied.status == 403 && denied.errorCode == "AccessDenied")

            let unsupported = try await s.send("GET", "/media", query: [("policy", "")])
            #expect(unsupported.status == 501 && unsupported.errorCode == "NotImplemented")

            // A preflight's refusals: the same document, with the request id of its header.
            let noOrigin = try await s.send("OPTIONS", "/media/a.mp4", sign: false)
            #expect(noOrigin.status == 400 && noOrigin.errorCode == "BadRequest")
            #expect(Self.element("RequestId", noOrigin.text) == noOrigin.headers["x-amz-request-id"])
            let refused = try await s.send(
                "OPTIONS", "/media/a.mp4",
                headers: [("origin", "https://evil.example"), ("access-control-request-method", "GET")],
                sign: false)
            #expect(
                refused.status == 403 && refused.errorCode == "AccessForbidden"
                    && Self.element("Resource", refused.text) == "/media/a.mp4")
            let allowed = try await s.send(
                "OPTIONS", "/media/a.mp4",
                headers: [("origin", "https://app.example"), ("access-control-request-method", "GET")],
                sign: false)
            #expect(allowed.status == 200 && allowed.headers["access-control-allow-origin"] == "https://app.example")
        }
    }
}
