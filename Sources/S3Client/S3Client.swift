import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import S3Wire
import SigV4

/// A client for S3-compatible object stores (the embedded CineScale store, MinIO, Ceph RGW, AWS).
///
/// Requests are signed with SigV4 (header signing, real payload SHA-256). Idempotent requests
/// are retried on connection errors, 5xx and throttling answers, following
/// `configuration.retry`.
///
/// The default `HTTPClient.shared` decompresses `Content-Encoding: gzip/deflate` answers; to
/// download objects stored with such an encoding byte for byte, pass an `HTTPClient` whose
/// configuration disables decompression.
public struct S3Client: Sendable {
    public let configuration: S3ClientConfiguration
    public let httpClient: HTTPClient
    public let logger: Logger
    let signer: SigV4Signer
    let endpoint: Result<Endpoint, S3ClientError>

    public init(
        configuration: S3ClientConfiguration,
        httpClient: HTTPClient = .shared,
        logger: Logger = Logger(label: "cinescale.s3client")
    ) {
        self.configuration = configuration
        self.httpClient = httpClient
        self.logger = logger
        self.signer = SigV4Signer(credentials: configuration.credentials, region: configuration.region, service: "s3")
        self.endpoint = Endpoint.parse(configuration.endpoint)
    }
}

// MARK: - Endpoint and addressing

struct Endpoint: Sendable, Hashable {
    var scheme: String
    var host: String
    var port: Int?
    /// Percent-encoded path prefix without trailing slash ("" for none).
    var basePath: String

    static func parse(_ url: URL) -> Result<Endpoint, S3ClientError> {
        guard let components = URLComponents(url: url, resolvingAgainstBaseURL: true),
            let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https"
        else {
            return .failure(.init(.invalidConfiguration, "endpoint must be an http or https URL: \(url)"))
        }
        guard var host = components.host, !host.isEmpty else {
            return .failure(.init(.invalidConfiguration, "endpoint has no host: \(url)"))
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var path = components.percentEncodedPath
        while path.hasSuffix("/") { path.removeLast() }
        if !path.isEmpty, !path.hasPrefix("/") { path = "/" + path }
        return .success(Endpoint(scheme: scheme, host: host, port: components.port, basePath: path))
    }

    var isDefaultPort: Bool {
        guard let port else { return true }
        return (scheme == "http" && port == 80) || (scheme == "https" && port == 443)
    }

    /// `host[:port]` as used in the URL and the `Host` header.
    func authority(host: String) -> String {
        let h = host.contains(":") ? "[\(host)]" : host
        return isDefaultPort ? h : "\(h):\(port!)"
    }
}

struct RequestTarget: Sendable {
    /// Value of the `Host` header.
    var authority: String
    /// Percent-encoded path, as sent and signed.
    var path: String
    var scheme: String

    func url(query: [(name: String, value: String)]) -> String {
        var s = "\(scheme)://\(authority)\(path)"
        if !query.isEmpty { s += "?" + SigV4Signer.encodeQuery(query) }
        return s
    }
}

extension S3Client {
    /// Bucket names that can be used as a DNS label under any TLS wildcard certificate.
    static func isVirtualHostCompatible(_ bucket: String) -> Bool {
        let u = Array(bucket.utf8)
        guard (3...63).contains(u.count) else { return false }
        func alnum(_ c: UInt8) -> Bool { (97...122).contains(c) || (48...57).contains(c) }
        guard alnum(u.first!), alnum(u.last!) else { return false }
        return u.allSatisfy { alnum($0) || $0 == UInt8(ascii: "-") }
    }

    static func validateBucket(_ bucket: String) throws {
        guard !bucket.isEmpty, !bucket.contains("/") else {
            throw S3ClientError.invalidArgument("invalid bucket name \"\(bucket)\"")
        }
    }

    static func validateKey(_ key: String) throws {
        guard !key.isEmpty else { throw S3ClientError.invalidArgument("object key must not be empty") }
        guard key.utf8.count <= 1024 else {
            throw S3ClientError.invalidArgument("object key longer than 1024 bytes")
        }
    }

    func target(bucket: String?, key: String?) throws -> RequestTarget {
        let endpoint = try self.endpoint.get()
        if let bucket { try Self.validateBucket(bucket) }
        if let key { try Self.validateKey(key) }
        let encodedKey = key.map { "/" + S3URIEncoding.encodePath($0) } ?? ""
        if let bucket, configuration.addressing == .virtualHost, Self.isVirtualHostCompatible(bucket) {
            let path = endpoint.basePath + (encodedKey.isEmpty ? "/" : encodedKey)
            return RequestTarget(
                authority: endpoint.authority(host: "\(bucket).\(endpoint.host)"), path: path, scheme: endpoint.scheme
            )
        }
        var path = endpoint.basePath
        if let bucket { path += "/" + S3URIEncoding.encode(bucket, encodeSlash: true) + encodedKey }
        if path.isEmpty { path = "/" }
        return RequestTarget(authority: endpoint.authority(host: endpoint.host), path: path, scheme: endpoint.scheme)
    }
}

// MARK: - Request execution

/// One S3 API call, before signing.
struct S3Operation: Sendable {
    var name: String
    var method: String
    var bucket: String?
    var key: String?
    var query: [(name: String, value: String)] = []
    /// Extra headers (lower-case names); all of them are signed.
    var headers: [(name: String, value: String)] = []
    var body: ByteBuffer?
    /// Payload hash of `body` when already known.
    var payload: PayloadSignature?
    /// Safe to send again after a failure.
    var idempotent: Bool = true
    /// A 200 answer may still carry an `<Error>` body (CompleteMultipartUpload, CopyObject, …).
    var mayEmbedError: Bool = false
    /// Largest body accepted in a buffered answer.
    var maxResponseBytes: Int = 64 * 1024 * 1024

    init(
        _ name: String, _ method: String, bucket: String? = nil, key: String? = nil,
        query: [(name: String, value: String)] = [], headers: [(name: String, value: String)] = [],
        body: ByteBuffer? = nil
    ) {
        self.name = name
        self.method = method
        self.bucket = bucket
        self.key = key
        self.query = query
        self.headers = headers
        self.body = body
    }
}

/// A complete answer with its body.
struct BufferedResponse: Sendable {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: ByteBuffer

    /// The first header named `name` (ASCII case-insensitive, as HTTP field names are).
    func header(_ name: String) -> String? {
        headers.first { $0.name.utf8.elementsEqual(name.utf8) { Self.lower($0) == Self.lower($1) } }?.value
    }

    private static func lower(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
    }

    func xml() throws -> S3XMLElement {
        try S3XML.parse(Data(body.readableBytesView))
    }
}

/// Answer head plus the body still to be read.
struct StreamingResponse: Sendable {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: HTTPClientResponse.Body
}

extension S3Client {
    func payloadSignature(for op: S3Operation) -> PayloadSignature {
        if let payload = op.payload { return payload }
        if let body = op.body, body.readableBytes > 0 { return PayloadSignature.sha256(body.readableBytesView) }
        return .sha256Hex(PayloadSignature.emptySHA256)
    }

    func makeRequest(_ op: S3Operation, payload: PayloadSignature, date: Date) throws -> HTTPClientRequest {
        let target = try self.target(bucket: op.bucket, key: op.key)
        var headers: [(name: String, value: String)] = [("host", target.authority)]
        headers.append(contentsOf: op.headers)
        let signing = SigningRequest(method: op.method, path: target.path, query: op.query, headers: headers)
        let auth = signer.signedHeaders(for: signing, payload: payload, date: date)
        var request = HTTPClientRequest(url: target.url(query: op.query))
        request.method = .init(rawValue: op.method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        for (name, value) in auth { request.headers.replaceOrAdd(name: name, value: value) }
        if let body = op.body {
            request.body = .bytes(body)
        } else if op.method == "PUT" || op.method == "POST" {
            request.body = .bytes(ByteBuffer())
        }
        return request
    }

    func logMetadata(_ op: S3Operation) -> Logger.Metadata {
        var m: Logger.Metadata = ["cinescale.s3.operation": "\(op.name)"]
        if let bucket = op.bucket { m["cinescale.s3.bucket"] = "\(bucket)" }
        if let key = op.key { m["cinescale.s3.key"] = "\(key)" }
        return m
    }

    static func headerList(_ response: HTTPClientResponse) -> [(name: String, value: String)] {
        response.headers.map { (name: $0.name, value: $0.value) }
    }

    /// Whether `error` is worth another attempt of an idempotent request.
    static func isRetryable(_ error: any Error) -> Bool {
        if error is CancellationError { return false }
        if let s3 = error as? S3Error { return s3.isRetryable }
        if error is S3ClientError { return false }
        if let http = error as? HTTPClientError {
            let permanent: [HTTPClientError] = [
                .cancelled, .invalidURL, .emptyHost, .emptyScheme, .missingSocketPath, .alreadyShutdown,
                .bodyLengthMismatch, .redirectLimitReached, .redirectCycleDetected, .traceRequestWithBody,
                .invalidProxyResponse, .proxyAuthenticationRequired,
            ]
            return !permanent.contains(http)
        }
        // Connection refused/reset, DNS, TLS and other transport failures.
        return true
    }

    func errorFromResponse(status: Int, headers: [(name: String, value: String)], body: ByteBuffer?, op: S3Operation)
        -> S3Error
    {
        let requestId = headers.first { $0.name.lowercased() == "x-amz-request-id" }?.value
        return S3Error.from(
            statusCode: status, body: body.map { Data($0.readableBytesView) }, requestId: requestId,
            bucket: op.bucket, key: op.key
        )
    }

    /// Runs `attempt` with the retry policy.
    func withRetries<T: Sendable>(
        _ op: S3Operation,
        _ attempt: (_ number: Int) async throws -> T
    ) async throws -> T {
        let policy = configuration.retry
        var number = 0
        while true {
            number += 1
            let started = ContinuousClock.now
            do {
                let result = try await attempt(number)
                if logger.logLevel <= .debug {
                    var m = logMetadata(op)
                    m["cinescale.s3.attempt"] = "\(number)"
                    m["cinescale.s3.duration_ms"] = "\((ContinuousClock.now - started).milliseconds)"
                    logger.debug("s3 request done", metadata: m)
                }
                return result
            } catch {
                try Task.checkCancellation()
                var m = logMetadata(op)
                m["cinescale.s3.attempt"] = "\(number)"
                m["cinescale.s3.error"] = "\(Self.describe(error))"
                guard op.idempotent, number < policy.maxAttempts, Self.isRetryable(error) else {
                    logger.debug("s3 request failed", metadata: m)
                    throw error
                }
                let delay = policy.delay(afterAttempt: number)
                m["cinescale.s3.retry_in_ms"] = "\(delay.milliseconds)"
                logger.warning("s3 request failed, retrying", metadata: m)
                try await Task.sleep(for: delay)
            }
        }
    }

    static func describe(_ error: any Error) -> String {
        if let s3 = error as? S3Error {
            return "\(s3.statusCode) \(s3.code ?? "-")"
        }
        return String(describing: error)
    }

    /// Sends `op` and reads the whole answer; non-2xx answers become `S3Error`.
    func send(_ op: S3Operation) async throws -> BufferedResponse {
        let payload = payloadSignature(for: op)
        return try await withRetries(op) { _ in
            let request = try makeRequest(op, payload: payload, date: Date())
            let response = try await httpClient.execute(request, timeout: configuration.timeout.timeAmount)
            let status = Int(response.status.code)
            let headers = Self.headerList(response)
            let success = (200..<300).contains(status)
            let limit = success ? op.maxResponseBytes : 1024 * 1024
            let body: ByteBuffer
            do {
                body = try await response.body.collect(upTo: limit)
            } catch let error as NIOTooManyBytesError {
                guard success else { throw errorFromResponse(status: status, headers: headers, body: nil, op: op) }
                throw S3ClientError.invalidResponse("answer to \(op.name) larger than \(limit) bytes: \(error)")
            }
            guard success else {
                throw errorFromResponse(status: status, headers: headers, body: body, op: op)
            }
            if op.mayEmbedError, body.readableBytes > 0, let root = try? S3XML.parse(Data(body.readableBytesView)),
                root.name == "Error"
            {
                let requestId = headers.first { $0.name.lowercased() == "x-amz-request-id" }?.value
                throw S3Error.from(
                    element: root, statusCode: status, requestId: requestId, bucket: op.bucket, key: op.key)
            }
            return BufferedResponse(status: status, headers: headers, body: body)
        }
    }

    /// Sends `op` and returns once the answer head arrived; the body is left to the caller.
    /// Retries apply until the head of a 2xx answer is received.
    func open(_ op: S3Operation) async throws -> StreamingResponse {
        let payload = payloadSignature(for: op)
        return try await withRetries(op) { _ in
            let request = try makeRequest(op, payload: payload, date: Date())
            let response = try await httpClient.execute(request, timeout: configuration.streamingTimeout.timeAmount)
            let status = Int(response.status.code)
            let headers = Self.headerList(response)
            guard (200..<300).contains(status) else {
                let body = try? await response.body.collect(upTo: 1024 * 1024)
                throw errorFromResponse(status: status, headers: headers, body: body, op: op)
            }
            return StreamingResponse(status: status, headers: headers, body: response.body)
        }
    }
}

extension Duration {
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
