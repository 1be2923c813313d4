import Foundation
import Testing
import VideoContract

@testable import ProductAPI

@Suite("Product API")
struct ProductAPITests {
    @Test func streamURLsAreBoundToTheirPathAndExpiry() {
        let signer = StreamSigner(secret: Array("secret".utf8))
        let now = Date(timeIntervalSince1970: 1_000_000)
        let query = signer.query(path: "/stream/v1/240p/index.m3u8", expires: 1_000_060)
        let parts = Dictionary(
            uniqueKeysWithValues: query.split(separator: "&").map {
                let kv = $0.split(separator: "=", maxSplits: 1)
                return (String(kv[0]), String(kv[1]))
            })
        #expect(
            signer.verify(
                path: "/stream/v1/240p/index.m3u8", expires: parts["expires"], signature: parts["signature"], now: now)
                == .valid)
        #expect(
            signer.verify(
                path: "/stream/v1/360p/index.m3u8", expires: parts["expires"], signature: parts["signature"], now: now)
                == .invalid)
        #expect(
            signer.verify(
                path: "/stream/v1/240p/index.m3u8", expires: "1000061", signature: parts["signature"], now: now)
                == .invalid)
        #expect(
            signer.verify(
                path: "/stream/v1/240p/index.m3u8", expires: parts["expires"], signature: parts["signature"],
                now: now.addingTimeInterval(61)) == .expired)
        #expect(signer.verify(path: "/stream/v1/240p/index.m3u8", expires: nil, signature: nil, now: now) == .invalid)
        // Another secret signs differently.
        let other = StreamSigner(secret: Array("other".utf8))
        #expect(
            other.verify(
                path: "/stream/v1/240p/index.m3u8", expires: parts["expires"], signature: parts["signature"], now: now)
                == .invalid)
    }

    /// The plan's cut: a 2 s first segment, the 4 s grid from there, chunks of whole segments; no boundary
    /// without a frame after it (a Matroska file whose Opus audio ends 7 ms after the last picture).
    @Test func thePlanCutsOnTheKeyframeGridAndNeverAfterTheLastPicture() {
        let cut = TranscodePlan.cut(duration: 60, keyframeInterval: 4, firstSeconds: 2, chunkSeconds: 32)
        #expect(cut.segments == [2] + Array(repeating: 4, count: 14) + [2])
        #expect(cut.chunks.map(\.segments) == [1, 8, 7])
        #expect(cut.chunks.map(\.start) == [0, 2, 34] && cut.chunks.map(\.end) == [2, 34, nil])
        #expect(cut.chunks.map(\.firstSegment) == [0, 1, 9])
        let padded = TranscodePlan.cut(
            duration: 9.007, keyframeInterval: 2, firstSeconds: 1, chunkSeconds: 4, frameDuration: 0.1)
        #expect(padded.segments.count == 5 && abs(padded.segments.last! - 2.007) < 1e-9)
        #expect(padded.chunks.map(\.segments) == [1, 2, 2])
        let exact = TranscodePlan.cut(
            duration: 9.2, keyframeInterval: 2, firstSeconds: 1, chunkSeconds: 4, frameDuration: 0.1)
        #expect(exact.segments.count == 6)
    }

    @Test func theStateFollowsTheLatestObjectThePipelineWrote() {
        let source = SourceObject(bucket: "ingest", key: "uploads/v.mp4")
        let upload = UploadRecord(
            videoId: "v", source: source, fileName: nil, contentType: "video/mp4", size: nil, createdAt: "",
            expiresAt: "")
        var objects = VideoObjects(upload: upload, metadata: nil, status: nil, sourceExists: false)
        #expect(objects.state.0 == .awaitingUpload)
        objects.sourceExists = true
        #expect(objects.state.0 == .probing)
        objects.metadata = VideoMetadata(videoId: "v", source: source, media: nil)
        #expect(objects.state == (.transcoding, 0))
        objects.status = VideoStatus(videoId: "v", state: "transcoding", percent: 42)
        #expect(objects.state == (.transcoding, 42))
        objects.status = VideoStatus(videoId: "v", state: "ready", percent: 100)
        #expect(objects.state == (.ready, 100))
        objects.status = VideoStatus(
            videoId: "v", state: "failed", stage: "probe", error: .init(code: "NoVideoStream", message: "…"))
        #expect(objects.state.0 == .failed)
        #expect(VideoObjects(upload: nil, metadata: nil, status: nil, sourceExists: false).isEmpty)
    }

    @Test func namesFromClientsAreChecked() throws {
        for good in ["en", "eng", "pt-BR", "zh-Hant-TW", "es-419"] {
            #expect(ProductAPI.isLanguageTag(good), "\(good)")
        }
        for bad in ["", "e", "en-", "en_US", "1en", "en-toolongsubtag", "fr\"", "日本"] {
            #expect(!ProductAPI.isLanguageTag(bad), "\(bad)")
        }
        #expect(ProductAPI.fileExtension("Holiday.MOV") == "mov")
        #expect(ProductAPI.fileExtension("noext") == nil)
        #expect(ProductAPI.fileExtension(".hidden") == nil)
        #expect(ProductAPI.fileExtension("a.tar/../x") == nil)
        #expect(ProductAPI.fileExtension("clip.verylongext") == nil)
        try ProductAPI.validate("0a1b2c-d_e.f")
        for bad in ["", ".", "a/b", "a b", "..", String(repeating: "a", count: 129), "é"] {
            #expect(throws: APIError.self) { try ProductAPI.validate(bad) }
        }
        let id = ProductAPI.newVideoID(tenant: "acme")
        #expect(id.count == 5 + 24 && id.hasPrefix("acme_") && ProductAPI.tenant(of: id) == "acme")
        try ProductAPI.validate(id)
        #expect(id != ProductAPI.newVideoID(tenant: "acme"))
        #expect(ProductAPI.tenant(of: "0a1b2c") == nil && ProductAPI.tenant(of: "_x") == nil)
        #expect(try ProductAPI.relativePath("seg-00001.m4s") == "seg-00001.m4s")
        for bad in ["../other/seg.m4s", "/media/x", "http://evil/x", "a?b", ""] {
            #expect(throws: APIError.self) { try ProductAPI.relativePath(bad) }
        }
    }
}

@Suite("multipart/form-data")
struct MultipartParserTests {
    static let body = Array(
        ("preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHoliday\r\n"
            + "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a b.mp4\"\r\nContent-Type: video/mp4\r\n\r\n"
            + "\r\n--XyNOT a delimiter\r\n-XyZ-- still data\r\n--XyZ--\r\nepilogue").utf8)

    /// Feeds `body` cut at `cuts` and collects (headers, data) per part.
    static func parse(_ body: [UInt8], cuts: [Int]) throws -> [([String: String], [UInt8])] {
        var parser = MultipartParser(boundary: "XyZ")
        var parts: [([String: String], [UInt8])] = []
        var start = 0
        for end in cuts + [body.count] {
            for event in try parser.feed(body[start..<end]) {
                switch event {
                case .partStart(let headers): parts.append((headers, []))
                case .data(let bytes): parts[parts.count - 1].1 += bytes
                case .partEnd: break
                }
            }
            start = end
        }
        #expect(parser.isDone)
        return parts
    }

    @Test func partsAreFoundWhereverTheChunksAreCut() throws {
        let whole = try Self.parse(Self.body, cuts: [])
        #expect(whole.count == 2)
        #expect(whole[0].0["content-disposition"]?.headerParameter("name") == "title")
        #expect(String(decoding: whole[0].1, as: UTF8.self) == "Holiday")
        #expect(whole[1].0["content-disposition"]?.headerParameter("filename") == "a b.mp4")
        #expect(whole[1].0["content-type"] == "video/mp4")
        #expect(String(decoding: whole[1].1, as: UTF8.self) == "\r\n--XyNOT a delimiter\r\n-XyZ-- still data")
        for cut in 1..<Self.body.count {
            let parts = try Self.parse(Self.body, cuts: [cut])
            #expect(parts.map(\.1) == whole.map(\.1), "cut at \(cut)")
        }
        let bytewise = try Self.parse(Self.body, cuts: Array(1..<Self.body.count))
        #expect(bytewise.map(\.1) == whole.map(\.1))
    }

    @Test func boundariesAndBrokenForms() {
        #expect(MultipartParser.boundary(contentType: "multipart/form-data; boundary=----abc") == "----abc")
        #expect(MultipartParser.boundary(contentType: "Multipart/Form-Data; charset=utf-8; boundary=\"q r\"") == "q r")
        #expect(MultipartParser.boundary(contentType: "application/json") == nil)
        #expect(MultipartParser.boundary(contentType: "multipart/form-data") == nil)
        var parser = MultipartParser(boundary: "b")
        #expect(throws: MultipartParser.Failure.self) { _ = try parser.feed(Array("--bXX".utf8)) }
        var huge = MultipartParser(boundary: "b")
        #expect(throws: MultipartParser.Failure.self) {
            _ = try huge.feed(Array("--b\r\n".utf8) + [UInt8](repeating: 65, count: 20_000))
        }
    }

    /// What multipart-kit 4.7.1 could not tell (see the comment atop MultipartParser.swift): where the form ended.
    @Test func onlyTheClosingDelimiterEndsTheForm() throws {
        let part = "--b\r\nContent-Disposition: form-data; name=\"file\"\r\nno colon here\r\n\r\nxyz\r\n--b"
        for (tail, done) in [("--\r\n", true), ("--", true), ("\r\nContent-Dis", false), ("-", false), ("", false)] {
            var parser = MultipartParser(boundary: "b")
            let events = try parser.feed(Array((part + tail).utf8))
            #expect(parser.isDone == done, "\(tail.debugDescription)")
            // The line without a colon is skipped, not an error.
            #expect(events.first == .partStart(["content-disposition": "form-data; name=\"file\""]))
            #expect(events.contains(.data(Array("xyz".utf8))))
        }
        var oneHyphen = MultipartParser(boundary: "b")
        #expect(throws: MultipartParser.Failure.self) { _ = try oneHyphen.feed(Array((part + "-x").utf8)) }
    }
}

/// The WebVTT storyboard: one cue per sprite tile, row by row, each naming its rectangle.
@Suite struct StoryboardTests {
    @Test func cuesNameEachTileOfTheSprite() {
        let sprite = VideoStatus.Sprite(
            key: "v/thumbnails/sprite.jpg", interval: 2.5, columns: 2, rows: 2, count: 3, tileWidth: 160, tileHeight: 90
        )
        let vtt = Storyboard.webVTT(sprite, image: "/stream/v/storyboard.jpg?token=abc")
        #expect(
            vtt == """
                WEBVTT

                00:00:00.000 --> 00:00:02.500
                /stream/v/storyboard.jpg?token=abc#xywh=0,0,160,90

                00:00:02.500 --> 00:00:05.000
                /stream/v/storyboard.jpg?token=abc#xywh=160,0,160,90

                00:00:05.000 --> 00:00:07.500
                /stream/v/storyboard.jpg?token=abc#xywh=0,90,160,90

                """)
        #expect(Storyboard.timestamp(3723.4567) == "01:02:03.457")
    }
}
