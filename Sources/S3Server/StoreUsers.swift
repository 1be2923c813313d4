import ObjectStore
import SigV4
import Synchronization

/// A user of the store (`cinescale store --users FILE`): a key pair and what it may do.
///
/// - `admin`: everything, on every bucket.
/// - `createBuckets`: may create buckets, and has full control of the buckets it created (their owner).
/// - `buckets`: access to named buckets — `read` (list, GET/HEAD objects), `write` (PUT, DELETE, multipart
///   uploads and copies into it) or `readwrite`.
///
/// Anyone, signed or not, may also read what a canned `public-read` ACL opens: a bucket's listing, or one object.
public struct StoreUser: Sendable, Equatable, Decodable {
    public enum Access: String, Sendable, Equatable, Decodable {
        case read, write, readwrite

        var reads: Bool { self != .write }
        var writes: Bool { self != .read }
    }

    public var name: String
    public var accessKey: String
    public var secretKey: String
    public var admin: Bool
    public var createBuckets: Bool
    public var buckets: [String: Access]

    public init(
        name: String, accessKey: String, secretKey: String, admin: Bool = false, createBuckets: Bool = false,
        buckets: [String: Access] = [:]
    ) {
        self.name = name
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.admin = admin
        self.createBuckets = createBuckets
        self.buckets = buckets
    }

    enum CodingKeys: String, CodingKey {
        case name, accessKey, secretKey, admin, createBuckets, buckets
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        accessKey = try c.decode(String.self, forKey: .accessKey)
        secretKey = try c.decode(String.self, forKey: .secretKey)
        admin = try c.decodeIfPresent(Bool.self, forKey: .admin) ?? false
        createBuckets = try c.decodeIfPresent(Bool.self, forKey: .createBuckets) ?? false
        buckets = try c.decodeIfPresent([String: Access].self, forKey: .buckets) ?? [:]
    }

    /// The single key of a store started with `--access-key`/`--secret-key`: an administrator.
    public static func administrator(_ credentials: Credentials, name: String = "admin") -> StoreUser {
        StoreUser(name: name, accessKey: credentials.accessKeyId, secretKey: credentials.secretAccessKey, admin: true)
    }

    /// Checks a list of users: names and access keys unique and non-empty, secrets long enough for SigV4 use.
    /// Returns a message naming the offending entry, or nil.
    public static func problem(in users: [StoreUser]) -> String? {
        guard !users.isEmpty else { return "the file lists no users" }
        var names = Set<String>()
        var keys = Set<String>()
        for (index, user) in users.enumerated() {
            let path = "users[\(index)]"
            if user.name.isEmpty { return "\(path).name: must not be empty" }
            if user.accessKey.isEmpty { return "\(path).accessKey: must not be empty" }
            if user.secretKey.count < 8 { return "\(path).secretKey: must be at least 8 characters" }
            if !names.insert(user.name).inserted { return "\(path).name: '\(user.name)' is listed twice" }
            if !keys.insert(user.accessKey).inserted { return "\(path).accessKey: '\(user.accessKey)' is listed twice" }
        }
        return nil
    }
}

/// The store's users, replaceable while it runs (SIGHUP re-reads `--users`): requests signed with a key
/// that is no longer listed fail from the next request on.
public final class StoreUsers: Sendable {
    private let byKey: Mutex<[String: StoreUser]>

    public init(_ users: [StoreUser]) {
        byKey = Mutex(Dictionary(users.map { ($0.accessKey, $0) }, uniquingKeysWith: { first, _ in first }))
    }

    public func replace(with users: [StoreUser]) {
        let map = Dictionary(users.map { ($0.accessKey, $0) }, uniquingKeysWith: { first, _ in first })
        byKey.withLock { $0 = map }
    }

    public func user(accessKey: String) -> StoreUser? {
        byKey.withLock { $0[accessKey] }
    }

    public var count: Int { byKey.withLock { $0.count } }
}

/// What a request does, for authorisation.
enum S3Action: Equatable {
    case listBuckets
    case createBucket
    /// Delete the bucket, read or change its ACL or notification rules.
    case administerBucket
    /// List objects, versions and uploads; HEAD bucket, location, versioning.
    case listBucket
    /// GET/HEAD an object, its attributes or ACL; the source of a copy.
    case readObject
    /// PUT/DELETE objects, multipart uploads, object ACL changes.
    case writeObject
}

/// Who sent a request.
enum Principal: Sendable {
    case anonymous
    case user(StoreUser)

    var name: String? {
        if case .user(let user) = self { return user.name }
        return nil
    }
}

/// The outcome of authorisation.
enum Authorization: Equatable {
    case allowed
    case denied
    /// Allowed if the object read turns out to be `public-read` (decided once it is opened).
    case ifObjectIsPublic
}

extension Principal {
    /// Whether this principal may do `action` on `bucket` (nil for ListBuckets and CreateBucket).
    /// `publicReadBuckets`: buckets whose objects and listing the operator opened to anyone (`--public-read-bucket`).
    func authorize(_ action: S3Action, bucket: BucketInfo?, publicReadBuckets: Set<String>) -> Authorization {
        if case .user(let user) = self, user.admin { return .allowed }
        let user: StoreUser? = if case .user(let user) = self { user } else { nil }
        switch action {
        case .listBuckets:
            return user == nil ? .denied : .allowed
        case .createBucket:
            return user?.createBuckets == true ? .allowed : .denied
        default:
            break
        }
        guard let bucket else { return .denied }
        if let user, let owner = bucket.owner, owner == user.name { return .allowed }
        let access = user?.buckets[bucket.name]
        let openToAll = publicReadBuckets.contains(bucket.name)
        switch action {
        case .listBucket:
            return access?.reads == true || openToAll || bucket.acl == .publicRead ? .allowed : .denied
        case .readObject:
            return access?.reads == true || openToAll ? .allowed : .ifObjectIsPublic
        case .writeObject:
            return access?.writes == true ? .allowed : .denied
        case .administerBucket, .listBuckets, .createBucket:
            return .denied
        }
    }

    /// Whether ListBuckets shows `bucket` to this principal.
    func sees(_ bucket: BucketInfo) -> Bool {
        guard case .user(let user) = self else { return false }
        return user.admin || bucket.owner == user.name || user.buckets[bucket.name] != nil
    }
}
