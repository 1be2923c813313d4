import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SigV4

/// Where and as whom SQS requests are sent.
public struct SQSClientConfiguration: Sendable {
    /// The service endpoint requests are POSTed to (`https://sqs.eu-west-1.amazonaws.com`,
    /// `http://127.0.0.1:4566`). See `SQSClientConfiguration.endpoint(forQueueURL:)` to derive it from a queue URL.
    public var endpoint: URL
    /// Region of the SigV4 scope.
    public var region: String
    public var credentials: Credentials
    /// Deadline of a request beyond its long-poll wait. Default 15 s.
    public var timeout: Duration

    public init(endpoint: URL, region: String, credentials: Credentials, timeout: Duration = .seconds(15)) {
        self.endpoint = endpoint
        self.region = region
        self.credentials = credentials
        self.timeout = timeout
    }

    /// The endpoint that serves a queue URL: its scheme and authority (`https://sqs.us-east-1.amazonaws.com/
    /// 123456789012/q` → `https://sqs.us-east-1.amazonaws.com`). Nil unless the URL is http(s) with a host.
    public static func endpoint(forQueueURL queueURL: String) -> URL? {
        guard let components = URLComponents(string: queueURL), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty
        else { return nil }
        var endpoint = URLComponents()
        endpoint.scheme = scheme
        endpoint.host = host
        endpoint.port = components.port
        return endpoint.url
    }
}

/// One message as received.
public struct SQSMessage: Sendable, Hashable {
    public var messageID: String
    /// Names this receipt of the message: delete it, or change its visibility, with this.
    public var receiptHandle: String
    public var body: String
    /// The system attributes asked for (`ApproximateReceiveCount`, `SentTimestamp`…).
    public var attributes: [String: String]

    public init(messageID: String, receiptHandle: String, body: String, attributes: [String: String] = [:]) {
        self.messageID = messageID
        self.receiptHandle = receiptHandle
        self.body = body
        self.attributes = attributes
    }

    /// How many times the message has been received, this time included (when asked for).
    public var approximateReceiveCount: Int? { attributes["ApproximateReceiveCount"].flatMap(Int.init) }
}

/// A small Amazon SQS client: the calls an event source needs, over AsyncHTTPClient, in the AWS JSON 1.0
/// protocol (`Content-Type: application/x-amz-json-1.0`, `X-Amz-Target: AmazonSQS.<Operation>`) that AWS SQS
/// and LocalStack both speak, signed with SigV4 (service `sqs`). One attempt per call: the caller decides
/// about retries (an event source backs off and polls again).
public struct SQSClient: Sendable {
    public let configuration: SQSClientConfiguration
    public let httpClient: HTTPClient
    public let logger: Logger
    private let signer: SigV4Signer

    public init(configuration: SQSClientConfiguration, httpClient: HTTPClient = .shared, logger: Logger) {
        self.configuration = configuration
        self.httpClient = httpClient
        self.logger = logger
        self.signer = SigV4Signer(credentials: configuration.credentials, region: configuration.region, service: "sqs")
    }

    /// Answers larger than this are refused (a ReceiveMessage of 10 messages of 256 KiB is 2.5 MiB).
    static let maxResponseBytes = 8 << 20

    // MARK: Operations

    /// ReceiveMessage: waits up to `waitTimeSeconds` (0–20, long polling) for up to `maxMessages` (1–10)
    /// messages, hidden from other receivers for `visibilityTimeout` seconds (nil: the queue's default).
    public func receiveMessages(
        queueURL: String, maxMessages: Int = 10, waitTimeSeconds: Int = 20, visibilityTimeout: Int? = nil,
        systemAttributes: [String] = ["ApproximateReceiveCount"]
    ) async throws(SQSError) -> [SQSMessage] {
        guard (1...10).contains(maxMessages) else {
            throw SQSError(.invalidArgument, "maxMessages must be between 1 and 10, got \(maxMessages)")
        }
        guard (0...20).contains(waitTimeSeconds) else {
            throw SQSError(.invalidArgument, "waitTimeSeconds must be between 0 and 20, got \(waitTimeSeconds)")
        }
        if let visibilityTimeout { try Self.checkVisibility(visibilityTimeout) }
        var request = ReceiveMessageRequest(
            QueueUrl: queueURL, MaxNumberOfMessages: maxMessages, WaitTimeSeconds: waitTimeSeconds,
            VisibilityTimeout: visibilityTimeout)
        if !systemAttributes.isEmpty { request.MessageSystemAttributeNames = systemAttributes }
        let response: ReceiveMessageResponse = try await call(
            "ReceiveMessage", request, extraTime: .seconds(Int64(waitTimeSeconds)))
        return try (response.Messages ?? []).map { (m) throws(SQSError) -> SQSMessage in
            guard let id = m.MessageId, let handle = m.ReceiptHandle else {
                throw SQSError(.invalidResponse, "ReceiveMessage answered a message without MessageId or ReceiptHandle")
            }
            return SQSMessage(messageID: id, receiptHandle: handle, body: m.Body ?? "", attributes: m.Attributes ?? [:])
        }
    }

    /// DeleteMessage.
    public func deleteMessage(queueURL: String, receiptHandle: String) async throws(SQSError) {
        let _: Empty = try await call(
            "DeleteMessage", DeleteMessageRequest(QueueUrl: queueURL, ReceiptHandle: receiptHandle))
    }

    /// ChangeMessageVisibility: the message stays hidden for `visibilityTimeout` seconds (0–43200) from now.
    public func changeMessageVisibility(queueURL: String, receiptHandle: String, visibilityTimeout: Int)
        async throws(SQSError)
    {
        try Self.checkVisibility(visibilityTimeout)
        let _: Empty = try await call(
            "ChangeMessageVisibility",
            ChangeMessageVisibilityRequest(
                QueueUrl: queueURL, ReceiptHandle: receiptHandle, VisibilityTimeout: visibilityTimeout))
    }

    private static func checkVisibility(_ seconds: Int) throws(SQSError) {
        guard (0...43_200).contains(seconds) else {
            throw SQSError(.invalidArgument, "visibilityTimeout must be between 0 and 43200 seconds, got \(seconds)")
        }
    }

    // MARK: Wire

    struct ReceiveMessageRequest: Encodable {
        var QueueUrl: String
        var MaxNumberOfMessages: Int
        var WaitTimeSeconds: Int
        var VisibilityTimeout: Int?
        var MessageSystemAttributeNames: [String]?
    }

    struct ReceiveMessageResponse: Decodable {
        struct Message: Decodable {
            var MessageId: String?
            var ReceiptHandle: String?
            var Body: String?
            var Attributes: [String: String]?
        }
        var Messages: [Message]?
    }

    struct DeleteMessageRequest: Encodable {
        var QueueUrl: String
        var ReceiptHandle: String
    }

    struct ChangeMessageVisibilityRequest: Encodable {
        var QueueUrl: String
        var ReceiptHandle: String
        var VisibilityTimeout: Int
    }

    struct Empty: Decodable {}

    struct ErrorDocument: Decodable {
        var __type: String?
        var message: String?
        var Message: String?
    }

    /// POSTs `input` as `AmazonSQS.<operation>` and decodes the answer; non-2xx answers become `.service` errors.
    func call<Input: Encodable, Output: Decodable>(_ operation: String, _ input: Input, extraTime: Duration = .zero)
        async throws(SQSError) -> Output
    {
        let body: [UInt8]
        do {
            body = Array(try JSONEncoder().encode(input))
        } catch {
            throw SQSError(
                .invalidArgument, "\(operation): the request could not be encoded: \(error)", underlying: error)
        }
        let request = try makeRequest(operation: operation, body: body, date: Date())
        let status: Int
        let headers: HTTPHeaders
        let answer: ByteBuffer
        do {
            let response = try await httpClient.execute(
                request, timeout: (configuration.timeout + extraTime).timeAmount)
            status = Int(response.status.code)
            headers = response.headers
            answer = try await response.body.collect(upTo: Self.maxResponseBytes)
        } catch is NIOTooManyBytesError {
            throw SQSError(.invalidResponse, "\(operation): the answer is larger than \(Self.maxResponseBytes) bytes")
        } catch {
            throw SQSError(
                .transport, "\(operation) to \(configuration.endpoint.absoluteString) failed: \(error)",
                underlying: error)
        }
        let requestID = headers.first(name: "x-amzn-RequestId")
        guard (200..<300).contains(status) else {
            throw Self.serviceError(
                operation: operation, status: status, headers: headers, body: answer, requestID: requestID)
        }
        let data = answer.readableBytes == 0 ? Data("{}".utf8) : Data(answer.readableBytesView)
        do {
            return try JSONDecoder().decode(Output.self, from: data)
        } catch {
            throw SQSError(
                .invalidResponse, "\(operation): the answer is not the expected JSON: \(error)", statusCode: status,
                requestID: requestID, underlying: error)
        }
    }

    func makeRequest(operation: String, body: [UInt8], date: Date) throws(SQSError) -> HTTPClientRequest {
        let endpoint = configuration.endpoint
        guard let components = URLComponents(url: endpoint, resolvingAgainstBaseURL: true),
            let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = components.host, !host.isEmpty
        else {
            throw SQSError(
                .invalidArgument, "the SQS endpoint must be an http or https URL, got '\(endpoint.absoluteString)'")
        }
        let defaultPort = scheme == "https" ? 443 : 80
        let hostName = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        let authority = components.port.map { $0 == defaultPort ? hostName : "\(hostName):\($0)" } ?? hostName
        var path = components.percentEncodedPath
        if path.isEmpty { path = "/" }
        let headers: [(name: String, value: String)] = [
            ("host", authority),
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", "AmazonSQS.\(operation)"),
        ]
        let signing = SigningRequest(method: "POST", path: path, headers: headers)
        let authorization = signer.signedHeaders(for: signing, payload: .sha256(body), date: date)
        var request = HTTPClientRequest(url: "\(scheme)://\(authority)\(path)")
        request.method = .POST
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        for (name, value) in authorization { request.headers.replaceOrAdd(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        return request
    }

    /// An error answer: `{"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": …}` (AWS), or with the bare
    /// code (LocalStack); without a body, the `x-amzn-ErrorType` header (`Code:Sender`).
    static func serviceError(operation: String, status: Int, headers: HTTPHeaders, body: ByteBuffer, requestID: String?)
        -> SQSError
    {
        let document = try? JSONDecoder().decode(ErrorDocument.self, from: Data(body.readableBytesView))
        var code = document?.__type ?? headers.first(name: "x-amzn-ErrorType")
        if let full = code {
            let afterHash = full.split(separator: "#").last.map(String.init) ?? full
            code = afterHash.split(separator: ":").first.map(String.init) ?? afterHash
        }
        var message = document?.message ?? document?.Message
        if message == nil, body.readableBytes > 0 {
            message = String(decoding: body.readableBytesView.prefix(512), as: UTF8.self)
        }
        return SQSError(
            .service, "\(operation): \(message ?? "HTTP \(status)")", serviceCode: code, statusCode: status,
            requestID: requestID)
    }
}

extension Duration {
    var timeAmount: TimeAmount {
        let (seconds, attoseconds) = components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
