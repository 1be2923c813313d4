import Foundation
import HTTPTypes
import Hummingbird
import InvocationQueue
import Logging
import NIOCore
import SigV4

/// The Lambda Invoke API subset (`aws lambda invoke/list-functions/get-function --endpoint-url`), every
/// request SigV4-authenticated (service `lambda`). Mount it on any Hummingbird router with `addRoutes(to:)`.
/// Its routes throw `GatewayError`s; ``InvokeAPIError`` writes every error answer.
public struct InvokeAPI: Sendable {
    let core: GatewayCore
    /// Runs `RequestResponse` invocations: the core (its dispatchers), or a fake in the route tests.
    let invoker: any FunctionInvoker
    let scheduler: any InvocationScheduling
    let verifier: SigV4Verifier
    let logger: Logger

    init(core: GatewayCore, invoker: any FunctionInvoker, scheduler: any InvocationScheduling, logger: Logger) {
        self.core = core
        self.invoker = invoker
        self.scheduler = scheduler
        self.logger = logger
        var secrets: [String: String] = [:]
        for credential in core.configuration.credentials {
            secrets[credential.accessKeyId] = credential.secretAccessKey
        }
        let lookup = secrets
        self.verifier = SigV4Verifier(
            region: core.configuration.region, service: "lambda",
            allowedClockSkew: core.configuration.allowedClockSkew, secretKey: { lookup[$0] })
    }

    static let requestIDName = HTTPField.Name("x-amzn-RequestId")!
    static let errorTypeName = HTTPField.Name("x-amzn-ErrorType")!
    static let invocationTypeName = HTTPField.Name("X-Amz-Invocation-Type")!
    static let executedVersionName = HTTPField.Name("X-Amz-Executed-Version")!
    static let functionErrorName = HTTPField.Name("X-Amz-Function-Error")!
    static let contentSHA256Name = "x-amz-content-sha256"
    static let defaultPayloadLimit = FunctionConfiguration.defaultMaxPayloadBytes

    /// Adds `POST /2015-03-31/functions/{name}/invocations`, `GET /2015-03-31/functions/` and
    /// `GET /2015-03-31/functions/{name}`, in a group whose middleware writes every error in Lambda's format.
    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        let router = router.group().add(middleware: ErrorAnswerMiddleware<Context, InvokeAPIError>(logger: logger))
        router.post("/2015-03-31/functions/:name/invocations") { request, context in
            try await self.invoke(request, name: context.parameters.get("name") ?? "")
        }
        router.get("/2015-03-31/functions") { request, _ in
            try await self.listFunctions(request)
        }
        router.get("/2015-03-31/functions/:name") { request, context in
            try await self.getFunction(request, name: context.parameters.get("name") ?? "")
        }
    }

    // MARK: Invoke

    func invoke(_ request: Request, name rawName: String) async throws -> Response {
        let (function, qualifier) = Self.parseName(rawName)
        let qualifierParam = request.uri.queryParameters.get("Qualifier")
        let limit = core.dispatchers[function]?.configuration.maxPayloadBytes ?? Self.defaultPayloadLimit
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw GatewayError.tooLarge(limit: limit, function: function)
        }
        let received: ByteBuffer
        do {
            received = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw GatewayError.tooLarge(limit: limit, function: function)
        } catch {
            throw GatewayError(.invalidRequestContent, "Could not read the request body.", function: function)
        }
        let body = try authenticate(request, body: received)
        guard core.dispatchers[function] != nil else {
            throw GatewayError.notFound(arn: core.configuration.arn(of: function), function: function)
        }
        for q in [qualifier, qualifierParam].compactMap({ $0 }) where q != "$LATEST" {
            throw GatewayError.notFound(arn: core.configuration.arn(of: function) + ":" + q, function: function)
        }
        let type = request.headers[Self.invocationTypeName] ?? "RequestResponse"
        switch type {
        case "RequestResponse":
            let result = try await invoker.invoke(function: function, payload: body, requestID: nil)
            var headers: HTTPFields = [
                .contentType: "application/json", Self.requestIDName: result.requestID,
                Self.executedVersionName: "$LATEST",
            ]
            if let functionError = result.functionError { headers[Self.functionErrorName] = functionError }
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: result.payload))
        case "Event":
            // Durable before 202, then run with the function's retry policy (see AsyncScheduler).
            let (dispatcher, payload) = try core.prepare(function: function, payload: body)
            try scheduler.admit(1)
            let requestID = LambdaFormat.requestID()
            let policy = dispatcher.configuration.retry
            let now = Date()
            let invocation = QueuedInvocation(
                id: requestID, function: function, source: "invoke", dedupeKey: nil,
                payload: Data(payload.readableBytesView), maxAttempts: policy.maxAttempts, createdAt: now,
                expiresAt: now.addingTimeInterval(policy.maxEventAge.seconds), nextAttemptAt: now)
            do {
                _ = try await scheduler.enqueue([invocation])
            } catch {
                throw GatewayError(
                    .serverFailed, "the invocation queue could not commit an Event invocation", function: function,
                    underlying: error)
            }
            return Response(status: .accepted, headers: [Self.requestIDName: requestID])
        case "DryRun":
            return Response(status: .noContent, headers: [Self.requestIDName: LambdaFormat.requestID()])
        default:
            throw GatewayError(
                .invalidParameterValue,
                "1 validation error detected: Value '\(type)' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]",
                function: function)
        }
    }

    /// `name`, `name:qualifier`, `account:function:name[:qualifier]` or a full ARN.
    static func parseName(_ raw: String) -> (name: String, qualifier: String?) {
        let decoded = S3URIEncoding.decode(raw) ?? raw
        let parts = decoded.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        if let index = parts.firstIndex(of: "function"), index + 1 < parts.count {
            return (parts[index + 1], index + 2 < parts.count ? parts[index + 2] : nil)
        }
        if parts.count == 2 { return (parts[0], parts[1]) }
        return (decoded, nil)
    }

    // MARK: ListFunctions / GetFunction

    func listFunctions(_ request: Request) async throws -> Response {
        _ = try authenticate(request, body: ByteBuffer())
        let functions = core.ordered.map { functionConfiguration($0) }
        return json(["Functions": functions])
    }

    func getFunction(_ request: Request, name rawName: String) async throws -> Response {
        _ = try authenticate(request, body: ByteBuffer())
        let (name, _) = Self.parseName(rawName)
        guard let dispatcher = core.dispatchers[name] else {
            throw GatewayError.notFound(arn: core.configuration.arn(of: name), function: name)
        }
        return json([
            "Configuration": functionConfiguration(dispatcher),
            "Code": ["RepositoryType": "S3", "Location": ""],
        ])
    }

    private func functionConfiguration(_ dispatcher: FunctionDispatcher) -> [String: Any] {
        let function = dispatcher.configuration
        let status = dispatcher.status()
        var object: [String: Any] = [
            "FunctionName": function.name,
            "FunctionArn": dispatcher.arn,
            "Runtime": "provided.al2023",
            "Role": "arn:aws:iam::\(core.configuration.accountId):role/cinescale-gateway",
            "Handler": function.handler ?? URL(fileURLWithPath: function.command[0]).lastPathComponent,
            "CodeSize": 0,
            "Description": "",
            "Timeout": function.timeoutSeconds,
            "MemorySize": function.memoryMB,
            "LastModified": Self.lastModified(core.startedAt),
            "CodeSha256": "",
            "Version": "$LATEST",
            "PackageType": "Zip",
            "Architectures": ["x86_64"],
            "State": status.state == .failing ? "Failed" : "Active",
            "LastUpdateStatus": "Successful",
        ]
        if status.state == .failing, let reason = status.lastInitError {
            object["StateReason"] = reason
            object["StateReasonCode"] = "InitError"
        }
        return object
    }

    static func lastModified(_ date: Date) -> String {
        let ms = Int64(date.timeIntervalSince1970 * 1000)
        // 2024-05-01T12:00:00.000+0000
        return String(LambdaFormat.timestamp(epochMilliseconds: ms).dropLast()) + "+0000"
    }

    private func json(_ object: [String: Any]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(
            status: .ok, headers: [.contentType: "application/json", Self.requestIDName: LambdaFormat.requestID()],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    // MARK: Authentication

    /// Verifies the SigV4 signature and the payload hash; returns the body (decoded when aws-chunked).
    /// Lambda clients do not send `x-amz-content-sha256`: the signed payload hash is then the body's SHA-256.
    func authenticate(_ request: Request, body: ByteBuffer) throws(GatewayError) -> ByteBuffer {
        var headers: [(name: String, value: String)] = []
        headers.reserveCapacity(request.headers.count + 2)
        if let authority = request.head.authority { headers.append((name: "host", value: authority)) }
        var sentHash = false
        var hasAuthorization = false
        for field in request.headers {
            let name = field.name.canonicalName
            if name == Self.contentSHA256Name { sentHash = true }
            if name == "authorization" { hasAuthorization = true }
            headers.append((name: name, value: field.value))
        }
        if !sentHash {
            headers.append(
                (name: Self.contentSHA256Name, value: PayloadSignature.sha256(body.readableBytesView).headerValue))
        }
        let rawPath = request.uri.path
        let query = request.uri.query
        let incoming = IncomingRequest(
            method: request.method.rawValue, rawPath: rawPath, rawQuery: query, headers: headers)
        if !hasAuthorization && SigV4Verifier.isAnonymous(incoming) {
            throw GatewayError(.missingAuthenticationToken, "Missing Authentication Token")
        }
        let verified: VerifiedRequest
        do {
            // Outside S3, SigV4 signs the path URI-encoded twice (botocore, the AWS SDKs); try that first.
            var doubled = incoming
            if rawPath.utf8.contains(UInt8(ascii: "%")) {
                doubled.rawPath = rawPath.replacingOccurrences(of: "%", with: "%25")
            }
            verified = try verifier.verify(doubled, now: Date())
        } catch let first {
            if first.code == .signatureDoesNotMatch && rawPath.contains("%") {
                do {
                    verified = try verifier.verify(incoming, now: Date())
                } catch {
                    throw Self.authError(error)
                }
            } else {
                throw Self.authError(first)
            }
        }
        switch verified.payload {
        case .unsigned:
            return body
        case .sha256(let hex):
            // When the client sent no x-amz-content-sha256, the hash verified is the body's own.
            guard sentHash else { return body }
            guard PayloadSignature.sha256(body.readableBytesView).headerValue == hex else {
                throw GatewayError(
                    .invalidSignature,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.")
            }
            return body
        case .awsChunked:
            var decoder = PayloadDecoder(expectation: verified.payload, headers: headers)
            var decoded = ByteBuffer()
            do {
                try body.withUnsafeReadableBytes { raw in
                    try decoder.feed(raw) { piece in decoded.writeBytes(piece) }
                }
                _ = try decoder.finish()
            } catch let error as SigV4Error {
                throw Self.authError(error)
            } catch {
                throw GatewayError(.invalidSignature, "The request body could not be verified.")
            }
            return decoded
        }
    }

    static func authError(_ error: SigV4Error) -> GatewayError {
        switch error.code {
        case .invalidAccessKeyId:
            GatewayError(
                .unrecognizedClient, "The security token included in the request is invalid.", underlying: error)
        case .signatureDoesNotMatch:
            GatewayError(
                .invalidSignature,
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
                underlying: error)
        default:
            GatewayError(.invalidSignature, error.message, underlying: error)
        }
    }
}
