import AsyncHTTPClient
import Foundation
import NIOCore
import S3Wire
import SigV4
import Testing
import WireFormat

@testable import S3Client

@Suite("Ranges, headers, dates, hashes")
struct ValueTests {
    @Test func rangeRendering() {
        #expect(ByteRange(from: 0, to: 99).headerValue == "bytes=0-99")
        #expect(ByteRange(10..<20).headerValue == "bytes=10-19")
        #expect(ByteRange(5...5).headerValue == "bytes=5-5")
        #expect(ByteRange.from(100).headerValue == "bytes=100-")
        #expect(ByteRange.suffix(500).headerValue == "bytes=-500")
        #expect("\(ByteRange.bytes(1...2))" == "bytes=1-2")
        #expect(throws: S3ClientError.self) { try ByteRange(from: 5, to: 4).validate() }
        #expect(throws: S3ClientError.self) { try ByteRange.suffix(0).validate() }
        #expect(ByteRange.suffix(5).resolve(size: 3) == 0..<3)
        #expect(ByteRange(from: 2, to: 100).resolve(size: 10) == 2..<10)
        #expect(ByteRange.from(10).resolve(size: 10) == nil)
    }

    @Test func contentRangeParsing() {
        #expect(ContentRange(header: "bytes 0-99/1000") == ContentRange(first: 0, last: 99, total: 1000))
        #expect(ContentRange(header: "bytes 5-9/*") == ContentRange(first: 5, last: 9, total: nil))
        #expect(ContentRange(header: "items 0-1/2") == nil)
        #expect(ContentRange(header: "bytes x-1/2") == nil)
    }

    @Test func objectHeadFromHeaders() {
        let head = ObjectHead(headers: [
            ("Content-Length", "100"), ("ETag", "\"abc\""), ("Content-Type", "video/mp4"),
            ("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT"), ("Content-Range", "bytes 100-199/5000"),
            ("x-amz-meta-Title", "Hello"), ("X-Amz-Meta-lang", "en"), ("x-amz-request-id", "R1"),
            ("Cache-Control", "no-cache"),
        ])
        #expect(head.contentLength == 100)
        #expect(head.size == 5000)
        #expect(head.etag == "abc")
        #expect(head.contentType == "video/mp4")
        #expect(head.lastModified == Date(timeIntervalSince1970: 1_445_412_480))
        #expect(head.userMetadata == ["title": "Hello", "lang": "en"])
        #expect(head.contentRange == ContentRange(first: 100, last: 199, total: 5000))
        #expect(head.requestId == "R1")
        #expect(head.cacheControl == "no-cache")
    }

    @Test func dates() {
        #expect(S3Date.parseISO8601("2009-10-12T17:50:30.000Z") == Date(timeIntervalSince1970: 1_255_369_830))
        #expect(S3Date.parseISO8601("2009-10-12T17:50:30Z") == Date(timeIntervalSince1970: 1_255_369_830))
        #expect(S3Date.parseISO8601("2009-10-12T17:50:30.5Z") == Date(timeIntervalSince1970: 1_255_369_830.5))
        #expect(S3Date.parseISO8601("2009-10-12T19:50:30+02:00") == Date(timeIntervalSince1970: 1_255_369_830))
        #expect(S3Date.parseISO8601("2009-10-28T22:32:00") == Date(timeIntervalSince1970: 1_256_769_120))
        #expect(S3Date.parseISO8601("garbage") == nil)
        #expect(S3Date.parseHTTP("Wed, 21 Oct 2015 07:28:00 GMT") == Date(timeIntervalSince1970: 1_445_412_480))
        #expect(S3Date.parseHTTP("Wednesday, 21-Oct-15 07:28:00 GMT") == Date(timeIntervalSince1970: 1_445_412_480))
        #expect(S3Date.parseHTTP("Wed Oct 21 07:28:00 2015") == Date(timeIntervalSince1970: 1_445_412_480))
        #expect(S3Date.parseHTTP("1 Jan 1970 00:00:00 GMT") == Date(timeIntervalSince1970: 0))
    }

    @Test func md5Vectors() {
        let vectors = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a"
            ),
        ]
        for (input, hex) in vectors {
            #expect(Hex.encode(MD5.hash(Array(input.utf8))) == hex)
        }
        #expect(MD5.hash(ByteBuffer(string: "abc")) == MD5.hash(Array("abc".utf8)))
        #expect(Data(MD5.hash(Array("abc".utf8))).base64EncodedString() == "kAFQmDzST7DWlj99KOF/cg==")
    }

    @Test func etagUnquoting() {
        #expect("\"abc\"".unquotedETag == "abc")
        #expect("abc".unquotedETag == "abc")
        #expect("W/\"abc\"".unquotedETag == "abc")
        #expect("&quot;abc-2&quot;".unquotedETag == "abc-2")
        #expect(S3Client.isPlainMD5("d41d8cd98f00b204e9800998ecf8427e"))
        #expect(!S3Client.isPlainMD5("d41d8cd98f00b204e9800998ecf8427e-2"))
    }

    @Test func metadataValidation() throws {
        let headers = try S3Client.metadataHeaders(["B-Key": " v ", "a": "1"])
        #expect(headers.map(\.name) == ["x-amz-meta-a", "x-amz-meta-b-key"])
        #expect(headers.first { $0.name == "x-amz-meta-b-key" }?.value == "v")
        #expect(throws: S3ClientError.self) { try S3Client.metadataHeaders(["bad key": "v"]) }
        #expect(throws: S3ClientError.self) { try S3Client.metadataHeaders(["k": "naïve"]) }
        #expect(throws: S3ClientError.self) { try S3Client.metadataHeaders(["k": "a\r\nb"]) }
        #expect(throws: S3ClientError.self) { try S3Client.metadataHeaders(["K": "1", "k": "2"]) }
    }

    @Test func partSizing() {
        let client = localClient()
        #expect(client.effectivePartSize(forFileSize: 40 << 20) == 8 << 20)
        var config = client.configuration
        config.partSize = 1 << 20
        let small = S3Client(configuration: config)
        #expect(small.effectivePartSize(forFileSize: 40 << 20) == 5 << 20)
        // 100 GiB with 8 MiB parts would need 12,800 parts.
        let size = 100 << 30
        let part = client.effectivePartSize(forFileSize: size)
        #expect((size + part - 1) / part <= 10_000)
        #expect(part % (1 << 20) == 0)
    }

    @Test func retryDelays() {
        let policy = S3RetryPolicy(maxAttempts: 5, baseDelay: .milliseconds(100), maxDelay: .seconds(1))
        for attempt in 1...6 {
            let d = policy.delay(afterAttempt: attempt)
            let cap = min(Duration.milliseconds(100 * (1 << (attempt - 1))), .seconds(1))
            #expect(d <= cap)
            #expect(d >= cap / 2)
        }
        #expect(S3RetryPolicy(maxAttempts: 0).maxAttempts == 1)
    }

    @Test func xmlEscaping() throws {
        let nasty = "a&b<c>d\"e'f\r\ng\th ü"
        let xml = "<R>" + S3XML.element("K", nasty) + "</R>"
        #expect(xml.contains("a&amp;b&lt;c&gt;d&quot;e&apos;f&#13;&#10;g&#9;h ü"))
        let root = try S3XML.parse(xml)
        #expect(root.string("K") == nasty)
        #expect(throws: S3ClientError.self) { try S3XML.parse("<a><b></a>") }
        #expect(throws: S3ClientError.self) { try S3XML.parse("") }
    }

    @Test func urlFormDecoding() {
        #expect(S3Client.urlFormDecode("a+b%2Bc%20d") == "a b+c d")
        #expect(S3Client.urlFormDecode("%E6%96%87") == "文")
        #expect(S3Client.urlFormDecode("%zz") == nil)
        #expect(S3Client.urlFormDecode("%FF") == nil)
    }
}

@Suite("S3 XML bodies (samples from the AWS documentation)")
struct XMLBodyTests {
    @Test func listBucketResult() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Name>example-bucket</Name>
              <Prefix>photos/2006/</Prefix>
              <KeyCount>3</KeyCount>
              <MaxKeys>1000</MaxKeys>
              <Delimiter>/</Delimiter>
              <IsTruncated>false</IsTruncated>
              <Contents>
                <Key>photos/2006/</Key>
                <LastModified>2016-04-30T23:51:29.000Z</LastModified>
                <ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag>
                <Size>0</Size>
                <StorageClass>STANDARD</StorageClass>
              </Contents>
              <CommonPrefixes>
                <Prefix>photos/2006/February/</Prefix>
              </CommonPrefixes>
              <CommonPrefixes>
                <Prefix>photos/2006/January/</Prefix>
              </CommonPrefixes>
            </ListBucketResult>
            """
        let page = try S3Client.parseListObjectsV2(S3XML.parse(xml))
        #expect(page.objects.count == 1)
        #expect(page.objects[0].key == "photos/2006/")
        #expect(page.objects[0].etag == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(page.objects[0].size == 0)
        #expect(page.objects[0].lastModified == S3Date.parseISO8601("2016-04-30T23:51:29Z"))
        #expect(page.objects[0].storageClass == "STANDARD")
        #expect(page.commonPrefixes == ["photos/2006/February/", "photos/2006/January/"])
        #expect(page.keyCount == 3)
        #expect(!page.isTruncated)
        #expect(page.nextContinuationToken == nil)
        #expect(page.prefix == "photos/2006/")
        #expect(page.delimiter == "/")
        #expect(page.maxKeys == 1000)
    }

    @Test func listBucketResultTruncatedAndURLEncoded() throws {
        let xml = """
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Name>bucket</Name><Prefix>a+b%2F</Prefix>
              <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
              <KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><EncodingType>url</EncodingType>
              <IsTruncated>true</IsTruncated>
              <Contents><Key>a+b%2Fc%2Bd~e</Key><Size>434234</Size><ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag></Contents>
              <Contents><Key>a+b%2F%0D%0A</Key><Size>1</Size></Contents>
            </ListBucketResult>
            """
        let page = try S3Client.parseListObjectsV2(S3XML.parse(xml))
        #expect(page.objects.map(\.key) == ["a b/c+d~e", "a b/\r\n"])
        #expect(page.objects[0].etag == "fba9dede5f27731c9771645a39863328")
        #expect(page.prefix == "a b/")
        #expect(page.isTruncated)
        #expect(page.nextContinuationToken == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
    }

    @Test func keysWithSpacesAreNotTrimmed() throws {
        let xml = "<ListBucketResult><Contents><Key> padded </Key><Size>1</Size></Contents></ListBucketResult>"
        #expect(try S3Client.parseListObjectsV2(S3XML.parse(xml)).objects[0].key == " padded ")
    }

    @Test func errorBody() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <Error>
              <Code>NoSuchKey</Code>
              <Message>The resource you requested does not exist</Message>
              <Resource>/mybucket/myfoto.jpg</Resource>
              <RequestId>4442587FB7D0A2F9</RequestId>
            </Error>
            """
        let error = S3Error.from(statusCode: 404, body: Data(xml.utf8), requestId: "HDR", bucket: "mybucket", key: "k")
        #expect(error.code == "NoSuchKey")
        #expect(error.isNoSuchKey)
        #expect(error.message == "The resource you requested does not exist")
        #expect(error.resource == "/mybucket/myfoto.jpg")
        #expect(error.requestId == "4442587FB7D0A2F9")
        #expect(error.statusCode == 404)
        #expect(!error.isRetryable)
        #expect("\(error)".contains("NoSuchKey"))

        let head = S3Error.from(statusCode: 404, body: nil, requestId: "R", bucket: "b", key: "k")
        #expect(head.code == "NotFound")
        #expect(head.isNoSuchKey)
        #expect(head.requestId == "R")
        let slow = S3Error.from(
            statusCode: 503, body: Data("<Error><Code>SlowDown</Code><Message>m</Message></Error>".utf8),
            requestId: nil, bucket: nil, key: nil
        )
        #expect(slow.code == "SlowDown")
        #expect(slow.isRetryable)
        let html = S3Error.from(
            statusCode: 502, body: Data("<html>bad gateway".utf8), requestId: nil, bucket: nil, key: nil)
        #expect(html.code == nil)
        #expect(html.isRetryable)
        #expect(html.message.contains("bad gateway"))
    }

    @Test func initiateMultipartUploadResult() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Bucket>example-bucket</Bucket>
              <Key>example-object</Key>
              <UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
            </InitiateMultipartUploadResult>
            """
        #expect(
            try S3Client.parseInitiateMultipartUpload(S3XML.parse(xml))
                == "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA"
        )
        #expect(throws: S3ClientError.self) { try S3Client.parseInitiateMultipartUpload(S3XML.parse("<Other/>")) }
        // gofakes3 (rclone serve s3) names the root differently.
        #expect(
            try S3Client.parseInitiateMultipartUpload(
                S3XML.parse("<InitiateMultipartUpload><UploadId>u1</UploadId></InitiateMultipartUpload>")
            ) == "u1"
        )
    }

    @Test func completeMultipartUploadResult() throws {
        let xml = """
            <CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Location>http://Example-Bucket.s3.us-east-1.amazonaws.com/Example-Object</Location>
              <Bucket>Example-Bucket</Bucket>
              <Key>Example-Object</Key>
              <ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag>
            </CompleteMultipartUploadResult>
            """
        #expect(try S3Client.parseCompleteMultipartUpload(S3XML.parse(xml)) == "3858f62230ac3c915f300c664312c11f-9")
    }

    @Test func copyObjectResult() throws {
        let xml = """
            <CopyObjectResult>
               <LastModified>2009-10-28T22:32:00</LastModified>
               <ETag>"9b2cf535f27731c974343645a3985328"</ETag>
            </CopyObjectResult>
            """
        let out = try S3Client.parseCopyObjectResult(S3XML.parse(xml))
        #expect(out.etag == "9b2cf535f27731c974343645a3985328")
        #expect(out.lastModified == Date(timeIntervalSince1970: 1_256_769_120))
    }

    @Test func deleteResult() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Deleted>
                <Key>sample1.txt</Key>
              </Deleted>
              <Error>
                <Key>sample2.txt</Key>
                <Code>AccessDenied</Code>
                <Message>Access Denied</Message>
              </Error>
            </DeleteResult>
            """
        let errors = try S3Client.parseDeleteResult(S3XML.parse(xml))
        #expect(errors == [DeleteObjectError(key: "sample2.txt", code: "AccessDenied", message: "Access Denied")])
    }

    @Test func listAllMyBucketsResult() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01">
              <Owner><ID>bcaf1ffd86f461ca5fb16fd081034f</ID><DisplayName>webfile</DisplayName></Owner>
              <Buckets>
                <Bucket><Name>quotes</Name><CreationDate>2006-02-03T16:45:09.000Z</CreationDate></Bucket>
                <Bucket><Name>samples</Name><CreationDate>2006-02-03T16:41:58.000Z</CreationDate></Bucket>
              </Buckets>
            </ListAllMyBucketsResult>
            """
        let buckets = try S3Client.parseListBuckets(S3XML.parse(xml))
        #expect(buckets.map(\.name) == ["quotes", "samples"])
        #expect(buckets[0].creationDate == S3Date.parseISO8601("2006-02-03T16:45:09Z"))
    }

    @Test func listPartsResult() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Bucket>example-bucket</Bucket>
              <Key>example-object</Key>
              <UploadId>XXBsb2FkIElEIGZvciBlbHZpbmcncyVcdS1tb3ZpZS5tMnRzEEEwbG9hZA</UploadId>
              <StorageClass>STANDARD</StorageClass>
              <PartNumberMarker>1</PartNumberMarker>
              <NextPartNumberMarker>3</NextPartNumberMarker>
              <MaxParts>2</MaxParts>
              <IsTruncated>true</IsTruncated>
              <Part>
                <PartNumber>2</PartNumber>
                <LastModified>2010-11-10T20:48:34.000Z</LastModified>
                <ETag>"7778aef83f66abc1fa1e8477f296d394"</ETag>
                <Size>10485760</Size>
              </Part>
              <Part>
                <PartNumber>3</PartNumber>
                <LastModified>2010-11-10T20:48:33.000Z</LastModified>
                <ETag>"aaaa18db4cc2f85cedef654fccc4a4x8"</ETag>
                <Size>10485760</Size>
              </Part>
            </ListPartsResult>
            """
        let out = try S3Client.parseListParts(S3XML.parse(xml))
        #expect(out.parts.map(\.partNumber) == [2, 3])
        #expect(out.parts[0].etag == "7778aef83f66abc1fa1e8477f296d394")
        #expect(out.parts[0].size == 10_485_760)
        #expect(out.isTruncated)
        #expect(out.nextPartNumberMarker == 3)
    }

    @Test func listMultipartUploadsResult() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Bucket>bucket</Bucket>
              <KeyMarker></KeyMarker>
              <UploadIdMarker></UploadIdMarker>
              <NextKeyMarker>my-movie.m2ts</NextKeyMarker>
              <NextUploadIdMarker>YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ</NextUploadIdMarker>
              <MaxUploads>3</MaxUploads>
              <IsTruncated>true</IsTruncated>
              <Upload>
                <Key>my-divisor</Key>
                <UploadId>XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw</UploadId>
                <StorageClass>REDUCED_REDUNDANCY</StorageClass>
                <Initiated>2010-11-10T20:48:33.000Z</Initiated>
              </Upload>
              <Upload>
                <Key>my-movie.m2ts</Key>
                <UploadId>YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ</UploadId>
                <StorageClass>STANDARD</StorageClass>
                <Initiated>2010-11-10T20:48:33.000Z</Initiated>
              </Upload>
            </ListMultipartUploadsResult>
            """
        let out = try S3Client.parseListMultipartUploads(S3XML.parse(xml))
        #expect(out.uploads.map(\.key) == ["my-divisor", "my-movie.m2ts"])
        #expect(out.uploads[1].uploadId == "YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ")
        #expect(out.uploads[0].initiated == S3Date.parseISO8601("2010-11-10T20:48:33.000Z"))
        #expect(out.isTruncated && out.nextKeyMarker == "my-movie.m2ts")
        #expect(out.nextUploadIdMarker == "YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ")
        let empty = try S3Client.parseListMultipartUploads(
            S3XML.parse(
                "<ListMultipartUploadsResult><Bucket>b</Bucket><NextKeyMarker></NextKeyMarker><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>"
            ))
        #expect(empty.uploads.isEmpty && !empty.isTruncated && empty.nextKeyMarker == nil)
        #expect(throws: S3ClientError.self) { try S3Client.parseListMultipartUploads(S3XML.parse("<Error/>")) }
    }
}
