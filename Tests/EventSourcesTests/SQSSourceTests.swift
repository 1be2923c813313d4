import Foundation
import Gateway
import NIOCore
import Testing

@testable import EventSources

@Suite("SQS event source")
struct SQSSourceTests {
    static let functions = """
        functions:
          probe:
            command: [probe]
        triggers:
          - function: probe
            bucket: ingest
        """

    /// The whole file, as the composition root reads it: the gateway's part, then the sources'.
    func load(_ sources: String, environment: [String: String] = [:]) throws(GatewayError) -> EventSourcesConfiguration
    {
        let file = try ConfigurationFile(
            yaml: Self.functions + "\n" + sources, baseDirectory: "/srv", environment: environment)
        _ = try file.decode(GatewayConfiguration.self)
        return try file.decode(EventSourcesConfiguration.self)
    }

    func message(_ yaml: String, environment: [String: String] = [:]) -> String {
        do {
            _ = try load(yaml, environment: environment)
            return "loaded"
        } catch {
            return error.message
        }
    }

    @Test func parsesTheDocumentedSourceWithDefaults() throws {
        let configuration = try load(
            """
            sources:
              sqs:
                - queueUrl: https://sqs.eu-west-1.amazonaws.com/123456789012/uploads
                - queueUrl: http://127.0.0.1:4566/000000000000/events
                  endpoint: http://127.0.0.1:4566/
                  accessKeyId: ${LS_KEY}
                  secretAccessKey: test
                  waitTimeSeconds: 5
                  visibilityTimeout: 8
                  maxInFlight: 3
            region: ap-south-1
            """,
            environment: [
                "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "env-secret", "AWS_SESSION_TOKEN": "tok",
                "LS_KEY": "lskey",
            ])
        let sources = configuration.sqs
        #expect(sources.count == 2)
        let aws = sources[0]
        #expect(aws.region == "eu-west-1")  // from the queue URL
        #expect(aws.endpoint.absoluteString == "https://sqs.eu-west-1.amazonaws.com")
        #expect(aws.credentials.accessKeyId == "AKIAENV" && aws.credentials.secretAccessKey == "env-secret")
        #expect(aws.credentials.sessionToken == "tok")
        #expect(aws.waitTimeSeconds == 20 && aws.visibilityTimeout == 30 && aws.maxInFlight == 100)
        #expect(aws.queueName == "uploads")
        let local = sources[1]
        #expect(local.region == "ap-south-1")  // the gateway's, declared after `sources`
        #expect(local.endpoint.absoluteString == "http://127.0.0.1:4566/")
        #expect(local.credentials.accessKeyId == "lskey" && local.credentials.secretAccessKey == "test")
        #expect(local.credentials.sessionToken == nil)  // the environment's token belongs to the environment's key
        #expect(local.waitTimeSeconds == 5 && local.visibilityTimeout == 8 && local.maxInFlight == 3)
        try configuration.validate()
    }

    @Test func errorsNameTheSourceAndTheField() {
        let env = ["AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"]
        #expect(
            message("sources:\n  sqs:\n    - region: us-east-1", environment: env)
                == "sources.sqs[0].queueUrl: is required (the queue's URL)")
        #expect(
            message("sources:\n  sqs:\n    - queueUrl: uploads", environment: env)
                == "sources.sqs[0].queueUrl: expected an http(s) queue URL, got 'uploads'")
        #expect(
            message(
                "sources:\n  sqs:\n    - queueUrl: http://h/1/q\n    - queueUrl: http://h/1/q\n      waitTimeSeconds: 21",
                environment: env)
                == "sources.sqs[1].waitTimeSeconds: expected an integer between 0 and 20, got '21'")
        #expect(
            message("sources:\n  sqs:\n    - queueUrl: http://h/1/q\n      visibilityTimeout: soon", environment: env)
                == "sources.sqs[0].visibilityTimeout: expected an integer between 1 and 43200, got 'soon'")
        #expect(
            message("sources:\n  sqs:\n    - queueUrl: http://h/1/q\n      maxInFlight: 0", environment: env)
                == "sources.sqs[0].maxInFlight: expected an integer between 1 and 100000, got '0'")
        #expect(
            message("sources:\n  sqs:\n    - queueUrl: http://h/1/q\n      endpoint: localhost:4566", environment: env)
                == "sources.sqs[0].endpoint: expected an http(s) URL, got 'localhost:4566'")
        #expect(
            message("sources:\n  sqs:\n    - queueUrl: http://h/1/q\n      batch: 10", environment: env)
                .hasPrefix("sources.sqs[0].batch: unknown field"))
        #expect(
            message("sources:\n  sqs:\n    - queueUrl: http://h/1/q\n      secretAccessKey: ${NOPE}", environment: env)
                == "sources.sqs[0].secretAccessKey: names ${NOPE}, which is not set in the gateway's environment")
        #expect(message("sources:\n  sqs:\n    - queueUrl: http://h/1/q").hasPrefix("sources.sqs[0]: no credentials"))
        #expect(
            message("sources:\n  kafka: []", environment: env) == "sources.kafka: unknown source (expected sqs or poll)"
        )
        #expect(message("sources:\n  sqs: http://h/1/q", environment: env) == "sources.sqs: expected a list of queues")
        #expect(
            message("sources:\n  sqs:\n    - http://h/1/q", environment: env).hasPrefix(
                "sources.sqs[0]: expected a mapping"))
    }

    @Test func classifiesBodies() throws {
        let event = #"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put"}]}"#
        #expect(SQSEventSource.classify(event) == .event(ByteBuffer(string: event)))
        // The first message of a new configuration (captured from LocalStack).
        let test =
            #"{"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-25T15:02:49.761Z", "Bucket": "bls"}"#
        #expect(SQSEventSource.classify(test) == .testEvent)
        // SNS → SQS without raw message delivery: the event is the envelope's Message string.
        let envelope = try String(
            decoding: JSONSerialization.data(withJSONObject: [
                "Type": "Notification", "MessageId": "4f1c", "TopicArn": "arn:aws:sns:us-east-1:000000000000:uploads",
                "Subject": "Amazon S3 Notification", "Message": event, "Timestamp": "2026-11-25T15:02:54.393Z",
            ]), as: UTF8.self)
        #expect(SQSEventSource.classify(envelope) == .event(ByteBuffer(string: event)))
        let testInEnvelope = try String(
            decoding: JSONSerialization.data(withJSONObject: [
                "Type": "Notification", "MessageId": "1", "Message": test,
            ]),
            as: UTF8.self)
        #expect(SQSEventSource.classify(testInEnvelope) == .testEvent)
        #expect(SQSEventSource.classify("garbage") == .invalid("the body is not a JSON object"))
        #expect(SQSEventSource.classify("[1,2]") == .invalid("the body is not a JSON object"))
        #expect(
            SQSEventSource.classify(#"{"Type":"Notification","MessageId":"1","Message":"not json"}"#)
                == .invalid("the SNS notification's Message is not a JSON object"))
        #expect(
            SQSEventSource.classify(#"{"Type":"Notification","MessageId":"1","Message":7}"#)
                == .invalid("an SNS notification without a 'Message' string"))
    }

    @Test func backoffDoublesUpToThirtySeconds() {
        #expect(SQSEventSource.backoff(afterFailures: 1, random: 1) == .seconds(1))
        #expect(SQSEventSource.backoff(afterFailures: 1, random: 0) == .milliseconds(500))
        #expect(SQSEventSource.backoff(afterFailures: 4, random: 1) == .seconds(8))
        #expect(SQSEventSource.backoff(afterFailures: 50, random: 1) == .seconds(30))
    }
}
