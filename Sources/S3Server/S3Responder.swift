import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ObjectStore
import SigV4
import StoreNotifications

/// Answers the S3 REST API over an `ObjectStore`: authentication, addressing, dispatch and S3 XML errors.
public struct S3Responder: HTTPResponder {
    public typealias Context = BasicRequestContext

    let store: ObjectStore
    let configuration: S3ServerConfiguration
    let verifier: SigV4Verifier
    let users: StoreUsers
    let logger: Logger
    let now: @Sendable () -> Date
    /// Bucket notification rules and the admission check for writes; nil: notifications not configured.
    let notifier: EventNotifier?
    /// Renders `GET /metrics` (Prometheus text); nil: no metrics route.
    let metrics: (@Sendable () -> [UInt8])?

    /// Bucket names answered by the store itself, never buckets.
    static let reservedBucketNames: Set<String> = ["metrics", "healthz"]

    public init(
        store: ObjectStore, configuration: S3ServerConfiguration, logger: Logger,
        notifier: EventNotifier? = nil, metrics: (@Sendable () -> [UInt8])? = nil, users: StoreUsers? = nil,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.store = store
        self.notifier = notifier
        self.metrics = metrics
        self.configuration = configuration
        self.logger = logger
        self.now = now
        let users = users ?? StoreUsers(configuration.users)
        self.users = users
        self.verifier = SigV4Verifier(
            region: configuration.region, allowedClockSkew: configuration.allowedClockSkewSeconds,
            secretKey: { users.user(accessKey: $0)?.secretKey })
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        let requestID = Self.makeRequestID()
        var logger = self.logger
        logger[metadataKey: "cinescale.request.id"] = .string(requestID)
        let origin = request.headers[.origin]

        if request.method == .options {
            var response: Response
            do {
                response = try cors.preflight(request)
            } catch {
                var error = error
                error.requestID = requestID
                response = try error.response(from: request, context: context)
            }
            response.headers[.init("x-amz-request-id")!] = requestID
            return response
        }

        if request.method == .get, request.uri.query == nil, request.headers[.authorization] == nil {
            switch request.uri.path {
            case "/metrics" where metrics != nil:
                return Response(
                    status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                    body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics!())))
            case "/healthz":
                return Response(
                    status: .ok, headers: [.contentType: "text/plain"],
                    body: ResponseBody(byteBuffer: ByteBuffer(string: "ok\n")))
            default: break
            }
        }

        var resource = request.uri.path
        var response: Response
        do {
            let s3 = try S3Request(
                request: request, requestID: requestID, virtualHostDomain: configuration.virtualHostDomain)
            resource = s3.resource
            let (auth, principal) = try authenticate(request, s3)
            let info = EventRequestInfo(
                principalID: auth?.accessKeyId ?? "", sourceIP: "", requestID: requestID,
                userAgent: request.headers[.userAgent] ?? "", host: request.head.authority ?? "")
            response = try await EventRequestInfo.$current.withValue(info) {
                try await dispatch(s3, body: request.body, auth: auth, principal: principal, logger: logger)
            }
        } catch {
            var s3Error = Self.s3Error(error, logger: logger)
            logger.debug(
                "request failed",
                metadata: [
                    "cinescale.method": .string(request.method.rawValue), "cinescale.resource": .string(resource),
                    "cinescale.error": .string(s3Error.description),
                ])
            s3Error.resource = resource
            s3Error.requestID = requestID
            response = try s3Error.response(from: request, context: context)
        }
        response.headers[.init("x-amz-request-id")!] = requestID
        response.headers[.init("x-amz-id-2")!] = requestID
        response.headers[.server] = "CineScale"
        if let origin { cors.decorate(&response, origin: origin) }
        return response
    }

    var cors: CORS { CORS(configuration: configuration.cors) }

    // MARK: Authentication

    /// Verifies the request's signature and names its user. An unsigned request is anonymous: authorisation
    /// then lets it read only what is public.
    func authenticate(_ request: Request, _ s3: S3Request) throws -> (VerifiedRequest?, Principal) {
        let incoming = S3Request.incoming(request, virtualHostedBucket: s3.virtualHostedBucket)
        if SigV4Verifier.isAnonymous(incoming) { return (nil, .anonymous) }
        let verified: VerifiedRequest
        do {
            verified = try verifier.verify(incoming, now: now())
        } catch {
            throw S3ServerError(error)
        }
        guard let user = users.user(accessKey: verified.accessKeyId) else {
            // Removed from the users between the signature check and here (a SIGHUP reload).
            throw S3ServerError(
                "InvalidAccessKeyId", .forbidden, "The AWS Access Key Id you provided does not exist in our records.")
        }
        return (verified, .user(user))
    }

    // MARK: Dispatch

    func dispatch(
        _ s3: S3Request, body: RequestBody, auth: VerifiedRequest?, principal: Principal, logger: Logger
    ) async throws -> Response {
        let payload = PayloadReader(body: body, expectation: auth?.payload ?? .unsigned, headers: s3.headers)
        guard let bucket = s3.bucket else {
            guard s3.method == .get else { throw S3ServerError.methodNotAllowed(s3.method.rawValue) }
            try require(
                principal.authorize(.listBuckets, bucket: nil, publicReadBuckets: configuration.publicReadBuckets))
            return try await listBuckets(s3, principal: principal)
        }
        let action = Self.action(of: s3)
        var access = Access(principal: principal)
        if action == .createBucket {
            try require(
                principal.authorize(.createBucket, bucket: nil, publicReadBuckets: configuration.publicReadBuckets))
        } else if let info = try? await store.bucketInfo(bucket) {
            // A bucket that does not exist is answered NoSuchBucket by the operation itself (to anyone, as S3 does).
            switch principal.authorize(action, bucket: info, publicReadBuckets: configuration.publicReadBuckets) {
            case .allowed: break
            case .denied: throw S3ServerError.accessDenied
            case .ifObjectIsPublic:
                access.objectMustBePublic = true
                access.mayList =
                    principal.authorize(.listBucket, bucket: info, publicReadBuckets: configuration.publicReadBuckets)
                    == .allowed
            }
        }
        guard let key = s3.key else {
            return try await bucketOperation(s3, bucket: bucket, payload: payload, access: access)
        }
        return try await objectOperation(s3, bucket: bucket, key: key, payload: payload, access: access, logger: logger)
    }

    /// The principal of a request and what its authorisation left to check once the object is opened.
    struct Access {
        var principal: Principal
        /// Set when the principal may read the object only if its ACL is `public-read`.
        var objectMustBePublic = false
        /// Whether the principal may list the bucket (and so learn that a key does not exist).
        var mayList = false

        func check(_ info: ObjectInfo) throws {
            if objectMustBePublic && info.metadata.acl != .publicRead { throw S3ServerError.accessDenied }
        }

        /// Opens or reads an object for a principal who may only see it if public: a missing object is then
        /// AccessDenied too unless the principal may list the bucket, as S3 answers it, so that names do not leak.
        func read<T>(_ body: () async throws -> T) async throws -> T {
            do {
                return try await body()
            } catch let error as ObjectStoreError where objectMustBePublic && !mayList && error.code == .noSuchKey {
                throw S3ServerError.accessDenied
            }
        }
    }

    func require(_ authorization: Authorization) throws {
        guard authorization == .allowed else { throw S3ServerError.accessDenied }
    }

    /// What a request does, for authorisation (see ``S3Action``).
    static func action(of s3: S3Request) -> S3Action {
        if s3.key == nil {
            switch s3.method {
            case .put:
                return s3.has("acl") || s3.has("notification") || s3.has("cors") || s3.has("versioning")
                    ? .administerBucket : .createBucket
            case .delete: return .administerBucket
            case .get where s3.has("acl") || s3.has("notification"): return .administerBucket
            case .post: return .writeObject
            default: return .listBucket
            }
        }
        switch s3.method {
        case .get, .head: return s3.has("uploadId") ? .writeObject : .readObject
        default: return .writeObject
        }
    }

    /// A copy's source must be readable by the request's principal: by its grants, or because it is public.
    func authorizeCopySource(_ source: (bucket: String, key: String), access: Access) async throws {
        guard let info = try? await store.bucketInfo(source.bucket) else { return }  // NoSuchBucket follows
        switch access.principal.authorize(.readObject, bucket: info, publicReadBuckets: configuration.publicReadBuckets)
        {
        case .allowed: return
        case .denied: throw S3ServerError.accessDenied
        case .ifObjectIsPublic:
            var sourceAccess = access
            sourceAccess.objectMustBePublic = true
            let object = try await sourceAccess.read {
                try await store.headObject(bucket: source.bucket, key: source.key)
            }
            try sourceAccess.check(object)
        }
    }

    func bucketOperation(_ s3: S3Request, bucket: String, payload: PayloadReader, access: Access) async throws
        -> Response
    {
        let unsupported = [
            "policy", "lifecycle", "tagging", "website", "replication", "encryption",
            "logging", "requestPayment", "object-lock", "ownershipControls", "accelerate",
            "analytics", "inventory", "metrics", "intelligent-tiering", "publicAccessBlock",
        ]
        if let name = unsupported.first(where: s3.has) {
            throw S3ServerError.notImplemented("?\(name)")
        }
        switch s3.method {
        case .put:
            if s3.has("notification") { return try await putBucketNotification(bucket: bucket, payload: payload) }
            if s3.has("acl") { return try await putBucketACL(s3, bucket: bucket, payload: payload) }
            if s3.has("versioning") || s3.has("cors") {
                throw S3ServerError.notImplemented("PUT ?\(s3.query.keys.sorted().joined(separator: "&"))")
            }
            guard !Self.reservedBucketNames.contains(bucket) else {
                throw S3ServerError(
                    "InvalidBucketName", .badRequest, "The bucket name '\(bucket)' is reserved by the store.")
            }
            return try await createBucket(s3, bucket: bucket, payload: payload, principal: access.principal)
        case .delete:
            if s3.has("cors") { throw S3ServerError.notImplemented("DELETE ?cors") }
            try await store.deleteBucket(bucket)
            try await notifier?.bucketDeleted(bucket)
            return Response(status: .noContent)
        case .head:
            _ = try await store.bucketInfo(bucket)
            return Response(status: .ok, headers: [.init("x-amz-bucket-region")!: configuration.region])
        case .get:
            if s3.has("location") { return try await bucketLocation(bucket) }
            if s3.has("versioning") { return try await bucketVersioning(bucket) }
            if s3.has("uploads") { return try await listMultipartUploads(s3, bucket: bucket) }
            if s3.has("notification") { return try await getBucketNotification(bucket: bucket) }
            if s3.has("acl") { return try await getBucketACL(bucket) }
            if s3.has("versions") { return try await listObjectVersions(s3, bucket: bucket) }
            if s3.has("cors") {
                throw S3ServerError.notImplemented("GET ?\(s3.query.keys.sorted().joined(separator: "&"))")
            }
            if s3.query["list-type"] == "2" { return try await listObjectsV2(s3, bucket: bucket) }
            return try await listObjectsV1(s3, bucket: bucket)
        case .post:
            if s3.has("delete") {
                try admit(bucket)
                return try await deleteObjects(s3, bucket: bucket, payload: payload)
            }
            throw S3ServerError.methodNotAllowed("POST")
        default:
            throw S3ServerError.methodNotAllowed(s3.method.rawValue)
        }
    }

    func objectOperation(
        _ s3: S3Request, bucket: String, key: String, payload: PayloadReader, access: Access, logger: Logger
    ) async throws -> Response {
        let unsupported = ["tagging", "retention", "legal-hold", "torrent", "restore", "select"]
        if let name = unsupported.first(where: s3.has) {
            throw S3ServerError.notImplemented("?\(name)")
        }
        switch s3.method {
        case .put:
            if s3.has("acl") { return try await putObjectACL(s3, bucket: bucket, key: key, payload: payload) }
            if let uploadID = s3.query["uploadId"] {
                if s3.header("x-amz-copy-source") != nil {
                    return try await uploadPartCopy(s3, bucket: bucket, key: key, uploadID: uploadID, access: access)
                }
                return try await uploadPart(s3, bucket: bucket, key: key, uploadID: uploadID, payload: payload)
            }
            try admit(bucket)
            if s3.header("x-amz-copy-source") != nil {
                return try await copyObject(s3, bucket: bucket, key: key, access: access)
            }
            return try await putObject(s3, bucket: bucket, key: key, payload: payload)
        case .get:
            if let uploadID = s3.query["uploadId"] {
                return try await listParts(s3, bucket: bucket, key: key, uploadID: uploadID)
            }
            if s3.has("acl") { return try await getObjectACL(bucket: bucket, key: key, access: access) }
            if s3.has("attributes") {
                return try await getObjectAttributes(s3, bucket: bucket, key: key, access: access)
            }
            return try await getObject(s3, bucket: bucket, key: key, head: false, access: access)
        case .head:
            return try await getObject(s3, bucket: bucket, key: key, head: true, access: access)
        case .delete:
            if let uploadID = s3.query["uploadId"] {
                try await store.abortMultipartUpload(bucket: bucket, key: key, uploadId: uploadID)
                return Response(status: .noContent)
            }
            try admit(bucket)
            try await store.deleteObject(bucket: bucket, key: key)
            return Response(status: .noContent)
        case .post:
            if s3.has("uploads") {
                return try await createMultipartUpload(s3, bucket: bucket, key: key)
            }
            if let uploadID = s3.query["uploadId"] {
                try admit(bucket)
                return try await completeMultipartUpload(
                    s3, bucket: bucket, key: key, uploadID: uploadID, payload: payload)
            }
            throw S3ServerError.methodNotAllowed("POST")
        default:
            throw S3ServerError.methodNotAllowed(s3.method.rawValue)
        }
    }

    // MARK: Notifications

    /// Refuses a write with 503 SlowDown while the bucket's event queue is full (nothing is dropped).
    func admit(_ bucket: String) throws {
        do throws(NotificationError) {
            try notifier?.admit(bucket: bucket)
        } catch {
            throw S3ServerError(error)
        }
    }

    func putBucketNotification(bucket: String, payload: PayloadReader) async throws -> Response {
        _ = try await store.bucketInfo(bucket)
        let body = try await payload.collect(limit: 256 * 1024)
        guard let notifier else {
            throw S3ServerError.notImplemented("PUT ?notification (start the store with --notify-webhook ID=URL)")
        }
        do {
            let configuration = try BucketNotificationConfiguration.parse(
                Data(body.readableBytesView), targets: notifier.targetIDs)
            try await notifier.setConfiguration(configuration, for: bucket)
        } catch let error as NotificationError {
            throw S3ServerError(error)
        }
        return Response(status: .ok)
    }

    func getBucketNotification(bucket: String) async throws -> Response {
        _ = try await store.bucketInfo(bucket)
        let configuration = notifier?.configuration(for: bucket) ?? BucketNotificationConfiguration()
        return Self.xmlResponse(configuration.xml())
    }

    // MARK: Responses

    static func xmlResponse(_ document: String, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:])
        -> Response
    {
        var headers = headers
        headers[.contentType] = "application/xml"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: document)))
    }

    /// What a client is told of an error: the S3 error it names; anything that is not a client's error is a
    /// 500 InternalError saying nothing of it, logged in full (the logger carries the request id the answer does).
    static func s3Error(_ error: any Error, logger: Logger) -> S3ServerError {
        switch error {
        case let error as S3ServerError: return error
        case let error as ObjectStoreError:
            if error.code == .internalError {
                logger.error("storage failure", metadata: ["cinescale.error": .string(error.description)])
            }
            return S3ServerError(error)
        case let error as SigV4Error: return S3ServerError(error)
        case let error as NotificationError: return S3ServerError(error)
        default:
            logger.error("unexpected failure", metadata: ["cinescale.error": .string(String(reflecting: error))])
            return .internalError
        }
    }

    static func makeRequestID() -> String {
        var generator = SystemRandomNumberGenerator()
        let value = generator.next() as UInt64
        let hex = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
