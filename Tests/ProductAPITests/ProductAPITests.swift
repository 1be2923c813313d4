import Foundation
import MediaFunctionSupport
import Testing

@testable import ProductAPI

@Suite("Product API")
struct ProductAPITests {
    @Test func streamURLsAreBoundToTheirPathAndExpiry() {
        let signer = StreamSigner(secret: Array("secret".utf8))
        let now = Date(timeIntervalSince1970: 1_000_000)
        let query = signer.query(path: "/stream/v1/240p/index.m3u8", expires: 1_000_060)
        let parts = Dictionary(uniqueKeysWithValues: query.split(separator: "&").map {
            let kv = $0.split(separator: "=", maxSplits: 1)
            return (String(kv[0]), String(kv[1]))
        })
        #expect(signer.verify(path: "/stream/v1/240p/index.m3u8", expires: parts["expires"], signature: parts["signature"], now: now) == .valid)
        #expect(signer.verify(path: "/stream/v1/360p/index.m3u8", expires: parts["expires"], signature: parts["signature"], now: now) == .invalid)
        #expect(signer.verify(path: "/stream/v1/240p/index.m3u8", expires: "1000061", signature: parts["signature"], now: now) == .invalid)
        #expect(
            signer.verify(
                path: "/stream/v1/240p/index.m3u8", expires: parts["expires"], signature: parts["signature"],
                now: now.addingTimeInterval(61)) == .expired)
        #expect(signer.verify(path: "/stream/v1/240p/index.m3u8", expires: nil, signature: nil, now: now) == .invalid)
        // Another secret signs differently.
        let other = StreamSigner(secret: Array("other".utf8))
        #expect(other.verify(path: "/stream/v1/240p/index.m3u8", expires: parts["expires"], signature: parts["signature"], now: now) == .invalid)
    }

    @Test func theStateFollowsTheLatestObjectThePipelineWrote() {
        let source = SourceObject(bucket: "ingest", key: "uploads/v.mp4")
        let upload = UploadRecord(
            videoId: "v", source: source, fileName: nil, contentType: "video/mp4", size: nil, createdAt: "", expiresAt: "")
        var objects = VideoObjects(upload: upload, metadata: nil, status: nil, sourceExists: false)
        #expect(objects.state.0 == .awaitingUpload)
        objects.sourceExists = true
        #expect(objects.state.0 == .probing)
        objects.metadata = .object(["videoId": .string("v")])
        #expect(objects.state == (.transcoding, 0))
        objects.status = VideoStatus(videoId: "v", state: "transcoding", percent: 42)
        #expect(objects.state == (.transcoding, 42))
        objects.status = VideoStatus(videoId: "v", state: "ready", percent: 100)
        #expect(objects.state == (.ready, 100))
        objects.status = VideoStatus(videoId: "v", state: "failed", stage: "probe", error: .init(code: "NoVideoStream", message: "…"))
        #expect(objects.state.0 == .failed)
        #expect(VideoObjects(upload: nil, metadata: nil, status: nil, sourceExists: false).isEmpty)
    }

    @Test func namesFromClientsAreChecked() throws {
        #expect(ProductAPI.fileExtension("Holiday.MOV") == "mov")
        #expect(ProductAPI.fileExtension("noext") == nil)
        #expect(ProductAPI.fileExtension(".hidden") == nil)
        #expect(ProductAPI.fileExtension("a.tar/../x") == nil)
        #expect(ProductAPI.fileExtension("clip.verylongext") == nil)
        try ProductAPI.validate("0a1b2c-d_e.f")
        for bad in ["", ".", "a/b", "a b", "..", String(repeating: "a", count: 129), "é"] {
            #expect(throws: APIError.self) { try ProductAPI.validate(bad) }
        }
        #expect(ProductAPI.newVideoID().count == 24)
        #expect(ProductAPI.newVideoID() != ProductAPI.newVideoID())
        #expect(try ProductAPI.relativePath("seg-00001.m4s") == "seg-00001.m4s")
        for bad in ["../other/seg.m4s", "/media/x", "http://evil/x", "a?b", ""] {
            #expect(throws: APIError.self) { try ProductAPI.relativePath(bad) }
        }
    }
}
