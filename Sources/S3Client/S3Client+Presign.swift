import Foundation
import SigV4

extension S3Client {
    /// A presigned URL for `method` on `bucket`/`key`, valid `expires` seconds (1...604800)
    /// from `date`. No network access.
    ///
    /// - Parameters:
    ///   - headers: headers the caller will send and that are signed (e.g. `content-type` for a
    ///     PUT); the request must carry them with exactly these values.
    ///   - query: extra query parameters to sign (e.g. `response-content-disposition`).
    public func presignedURL(
        method: String,
        bucket: String,
        key: String,
        expires: Int,
        headers: [String: String] = [:],
        query: [(name: String, value: String)] = [],
        date: Date = Date()
    ) throws -> URL {
        guard (1...604_800).contains(expires) else {
            throw S3ClientError.invalidArgument("presigned URL expiry must be 1...604800 seconds, got \(expires)")
        }
        let method = method.uppercased()
        let target = try self.target(bucket: bucket, key: key)
        var signed: [(name: String, value: String)] = [("host", target.authority)]
        for (name, value) in headers.sorted(by: { $0.key.lowercased() < $1.key.lowercased() }) {
            let lower = name.lowercased()
            guard lower != "host" else { continue }
            try Self.validateHeaderValue(value, "header \(name)")
            signed.append((lower, value))
        }
        let request = SigningRequest(method: method, path: target.path, query: query, headers: signed)
        let presigned: [(name: String, value: String)]
        do {
            presigned = try signer.presignedQuery(for: request, expires: expires, date: date)
        } catch {
            throw S3ClientError.invalidArgument("cannot presign: \(error)")
        }
        guard let url = URL(string: target.url(query: presigned)) else {
            throw S3ClientError.invalidArgument("presigned URL is not a valid URL")
        }
        return url
    }
}
