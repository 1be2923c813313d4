import FakeHTTPServer
import Foundation
import Logging
import NIOCore
import NIOPosix
import SQSClient
import SigV4
import Testing

/// The wire format and the failure paths of the SQS client, against a scripted server that checks SigV4
/// (service `sqs`). The client against a real SQS implementation: IntegrationTests/test_localstack.py.
@Suite("SQSClient")
struct SQSClientTests {
    static let queueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/uploads"

    /// The scripted server answers at once; the generous timeout only bounds a hang (a loaded machine once took
    /// over 5 s to run an answer through the test process's starved cooperative pool).
    func client(_ endpoint: URL, timeout: Duration = .seconds(60)) -> SQSClient {
        SQSClient(
            configuration: SQSClientConfiguration(
                endpoint: endpoint, region: "eu-west-1",
                credentials: Credentials(accessKeyId: fakeAccessKey, secretAccessKey: fakeSecretKey), timeout: timeout),
            logger: Logger(label: "test"))
    }

    @Test func receiveSendsTheJSONProtocolSignedForSQS() async throws {
        let answer = #"""
            {"Messages":[{"MessageId":"m-1","ReceiptHandle":"rh-1","MD5OfBody":"x","Body":"{\"Records\":[]}",
            "Attributes":{"ApproximateReceiveCount":"3"}}]}
            """#
        try await withFakeSQS({ _ in .json(200, answer) }) { endpoint, recorder in
            let messages = try await client(endpoint).receiveMessages(
                queueURL: Self.queueURL, maxMessages: 7, waitTimeSeconds: 1, visibilityTimeout: 45)
            #expect(
                messages == [
                    SQSMessage(
                        messageID: "m-1", receiptHandle: "rh-1", body: #"{"Records":[]}"#,
                        attributes: ["ApproximateReceiveCount": "3"])
                ])
            #expect(messages.first?.approximateReceiveCount == 3)
            #expect(recorder.failures == [])
            let request = try #require(recorder.requests.first)
            #expect(request.method == "POST" && request.target == "/")
            #expect(request.header("X-Amz-Target") == "AmazonSQS.ReceiveMessage")
            #expect(request.header("Content-Type") == "application/x-amz-json-1.0")
            #expect(request.header("Authorization")?.contains("/eu-west-1/sqs/aws4_request") == true)
            let json = try #require(request.json)
            #expect(json["QueueUrl"] as? String == Self.queueURL)
            #expect(json["MaxNumberOfMessages"] as? Int == 7)
            #expect(json["WaitTimeSeconds"] as? Int == 1)
            #expect(json["VisibilityTimeout"] as? Int == 45)
            #expect(json["MessageSystemAttributeNames"] as? [String] == ["ApproximateReceiveCount"])
        }
    }

    @Test func deleteAndChangeVisibility() async throws {
        try await withFakeSQS({ _ in .json(200, "{}") }) { endpoint, recorder in
            let sqs = client(endpoint)
            try await sqs.deleteMessage(queueURL: Self.queueURL, receiptHandle: "rh-1")
            try await sqs.changeMessageVisibility(queueURL: Self.queueURL, receiptHandle: "rh-2", visibilityTimeout: 60)
            #expect(recorder.failures == [])
            let requests = recorder.requests
            #expect(
                requests.map { $0.header("X-Amz-Target") } == [
                    "AmazonSQS.DeleteMessage", "AmazonSQS.ChangeMessageVisibility",
                ])
            #expect(requests[0].json?["ReceiptHandle"] as? String == "rh-1")
            #expect(requests[1].json?["VisibilityTimeout"] as? Int == 60)
        }
    }

    @Test func awsErrorsKeepTheirCodeWithoutTheNamespace() async throws {
        let body = #"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."}"#
        try await withFakeSQS({ _ in .json(400, body, headers: [("x-amzn-RequestId", "req-9")]) }) { endpoint, _ in
            do throws(SQSError) {
                _ = try await client(endpoint).receiveMessages(queueURL: Self.queueURL, waitTimeSeconds: 0)
                Issue.record("expected an error")
            } catch {
                #expect(error.code == .service)
                #expect(error.serviceCode == "QueueDoesNotExist")
                #expect(error.isQueueDoesNotExist)
                #expect(error.statusCode == 400)
                #expect(error.requestID == "req-9")
                #expect(error.message.contains("The specified queue does not exist."))
                #expect(!error.isRetryable)
            }
        }
    }

    @Test func localStackErrorsAndTheErrorTypeHeader() async throws {
        // LocalStack: the bare code in __type; a body-less answer: only the x-amzn-ErrorType header.
        try await withFakeSQS({ request in
            request.header("X-Amz-Target") == "AmazonSQS.DeleteMessage"
                ? .json(400, #"{"__type": "ReceiptHandleIsInvalid", "message": "bad handle"}"#)
                : FakeResponse(status: 503, headers: [("x-amzn-ErrorType", "ServiceUnavailable:Server")])
        }) { endpoint, _ in
            let sqs = client(endpoint)
            await #expect { try await sqs.deleteMessage(queueURL: Self.queueURL, receiptHandle: "x") } throws: {
                error in
                (error as? SQSError)?.isReceiptHandleInvalid == true
            }
            await #expect {
                try await sqs.changeMessageVisibility(queueURL: Self.queueURL, receiptHandle: "x", visibilityTimeout: 1)
            } throws: { error in
                guard let error = error as? SQSError else { return false }
                return error.serviceCode == "ServiceUnavailable" && error.statusCode == 503 && error.isRetryable
            }
        }
    }

    @Test func anAnswerThatIsNotJSONIsAnInvalidResponse() async throws {
        try await withFakeSQS({ _ in FakeResponse(status: 200, body: Array("<html>proxy</html>".utf8)) }) {
            endpoint, _ in
            await #expect {
                _ = try await client(endpoint).receiveMessages(queueURL: Self.queueURL, waitTimeSeconds: 0)
            } throws: { ($0 as? SQSError)?.code == .invalidResponse }
        }
    }

    @Test func aDroppedConnectionOrAClosedPortIsATransportError() async throws {
        try await withFakeSQS({ _ in .dropped }) { endpoint, _ in
            await #expect {
                _ = try await client(endpoint).receiveMessages(queueURL: Self.queueURL, waitTimeSeconds: 0)
            } throws: { ($0 as? SQSError).map { $0.code == .transport && $0.isRetryable } ?? false }
        }
        // A port nothing listens on (bound, then closed).
        let socket = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(
            host: "127.0.0.1", port: 0
        ).get()
        let port = socket.localAddress!.port!
        try await socket.close()
        await #expect {
            // AsyncHTTPClient retries a refused connection until the request's deadline: a short one here.
            _ = try await client(URL(string: "http://127.0.0.1:\(port)")!, timeout: .seconds(2)).receiveMessages(
                queueURL: Self.queueURL, waitTimeSeconds: 0)
        } throws: { ($0 as? SQSError)?.code == .transport }
    }

    @Test func aStalledServerTimesOutAfterTheWaitPlusTheTimeout() async throws {
        // The server stalls for two minutes: an answer before then can only be the client giving up. No upper
        // bound tighter than that, which a loaded machine's late timer would break.
        try await withFakeSQS({ _ in
            try? await Task.sleep(for: .seconds(120))
            return .json(200, "{}")
        }) { endpoint, _ in
            let started = ContinuousClock.now
            await #expect {
                _ = try await client(endpoint, timeout: .milliseconds(300)).receiveMessages(
                    queueURL: Self.queueURL, waitTimeSeconds: 1)
            } throws: { ($0 as? SQSError)?.code == .transport }
            let elapsed = ContinuousClock.now - started
            #expect(elapsed >= .milliseconds(1300) && elapsed < .seconds(120))
        }
    }

    @Test func argumentsOutOfRangeAreRefusedBeforeSending() async throws {
        try await withFakeSQS({ _ in .json(200, "{}") }) { endpoint, recorder in
            let sqs = client(endpoint)
            await #expect { _ = try await sqs.receiveMessages(queueURL: Self.queueURL, maxMessages: 11) } throws: {
                ($0 as? SQSError)?.code == .invalidArgument
            }
            await #expect { _ = try await sqs.receiveMessages(queueURL: Self.queueURL, waitTimeSeconds: 21) } throws: {
                ($0 as? SQSError)?.code == .invalidArgument
            }
            await #expect {
                try await sqs.changeMessageVisibility(
                    queueURL: Self.queueURL, receiptHandle: "x", visibilityTimeout: 43_201)
            } throws: { ($0 as? SQSError)?.code == .invalidArgument }
            #expect(recorder.requests.isEmpty)
        }
    }

    @Test func endpointOfAQueueURL() {
        #expect(
            SQSClientConfiguration.endpoint(forQueueURL: Self.queueURL)?.absoluteString
                == "https://sqs.eu-west-1.amazonaws.com")
        #expect(
            SQSClientConfiguration.endpoint(forQueueURL: "http://127.0.0.1:4566/000000000000/q")?.absoluteString
                == "http://127.0.0.1:4566")
        #expect(SQSClientConfiguration.endpoint(forQueueURL: "uploads") == nil)
        #expect(SQSClientConfiguration.endpoint(forQueueURL: "ftp://host/q") == nil)
    }
}
