import Foundation
import ObjectStore
import Testing

@testable import S3Server

/// Who may do what: the decisions behind `--users`, bucket owners and canned ACLs.
@Suite struct AuthorizationTests {
    let functions = StoreUser(
        name: "functions", accessKey: "F", secretKey: "functions-secret",
        buckets: ["ingest": .read, "media": .readwrite])
    let alice = StoreUser(name: "alice", accessKey: "A", secretKey: "alice-secret", createBuckets: true)
    let admin = StoreUser(name: "admin", accessKey: "K", secretKey: "admin-secret", admin: true)

    func bucket(_ name: String, owner: String? = nil, acl: CannedACL = .private) -> BucketInfo {
        BucketInfo(name: name, creationDate: Date(), owner: owner, acl: acl)
    }

    func decide(_ principal: Principal, _ action: S3Action, _ info: BucketInfo?, open: Set<String> = [])
        -> Authorization
    {
        principal.authorize(action, bucket: info, publicReadBuckets: open)
    }

    @Test func grantsAreNamedPerBucketAndOperation() {
        let user = Principal.user(functions)
        #expect(decide(user, .readObject, bucket("ingest")) == .allowed)
        #expect(decide(user, .listBucket, bucket("ingest")) == .allowed)
        #expect(decide(user, .writeObject, bucket("ingest")) == .denied)
        #expect(decide(user, .writeObject, bucket("media")) == .allowed)
        #expect(decide(user, .administerBucket, bucket("media")) == .denied)
        #expect(decide(user, .createBucket, nil) == .denied)
        #expect(decide(user, .readObject, bucket("other")) == .ifObjectIsPublic)
        #expect(decide(user, .listBucket, bucket("other")) == .denied)
        #expect(decide(user, .listBuckets, nil) == .allowed)
        #expect(user.sees(bucket("media")) && !user.sees(bucket("other")))
    }

    @Test func ownersAdministratorsAndTheAnonymous() {
        let owned = bucket("alices", owner: "alice")
        for action in [S3Action.readObject, .writeObject, .listBucket, .administerBucket] {
            #expect(decide(.user(alice), action, owned) == .allowed)
            #expect(decide(.user(admin), action, owned) == .allowed)
        }
        #expect(decide(.user(alice), .createBucket, nil) == .allowed)
        #expect(decide(.user(alice), .writeObject, bucket("ingest")) == .denied)
        #expect(decide(.anonymous, .listBuckets, nil) == .denied)
        #expect(decide(.anonymous, .writeObject, owned) == .denied)
        #expect(decide(.anonymous, .readObject, owned) == .ifObjectIsPublic)
        #expect(decide(.anonymous, .listBucket, owned) == .denied)
        // A public-read bucket opens its listing to anyone; --public-read-bucket opens its objects too.
        #expect(decide(.anonymous, .listBucket, bucket("pub", acl: .publicRead)) == .allowed)
        #expect(decide(.anonymous, .readObject, bucket("pub", acl: .publicRead)) == .ifObjectIsPublic)
        #expect(decide(.anonymous, .readObject, bucket("media"), open: ["media"]) == .allowed)
        #expect(decide(.anonymous, .writeObject, bucket("media"), open: ["media"]) == .denied)
    }

    @Test func usersFileProblemsAreNamed() {
        #expect(StoreUser.problem(in: []) == "the file lists no users")
        #expect(StoreUser.problem(in: [functions, alice]) == nil)
        var twin = alice
        twin.name = "bob"
        #expect(StoreUser.problem(in: [alice, twin]) == "users[1].accessKey: 'A' is listed twice")
        var short = alice
        short.secretKey = "short"
        #expect(StoreUser.problem(in: [short]) == "users[0].secretKey: must be at least 8 characters")
    }

    @Test func aReplacedDirectoryAnswersTheNewUsers() {
        let users = StoreUsers([functions])
        #expect(users.user(accessKey: "F")?.name == "functions")
        users.replace(with: [alice])
        #expect(users.user(accessKey: "F") == nil && users.user(accessKey: "A")?.name == "alice")
    }
}
