import Foundation
import Logging
import S3Client
import ServiceLifecycle
import WireFormat

extension ProductAPI {
    /// The service that aborts expired sessions' multipart uploads: the composition root runs it in its group.
    public func makeUploadJanitor() -> UploadJanitor {
        UploadJanitor(
            s3: s3, bucket: configuration.ingestBucket, prefix: configuration.uploadPrefix,
            expiry: .seconds(configuration.resumableExpiry), logger: logger)
    }
}

/// Aborts multipart uploads in the ingest bucket (under the uploads prefix, so only the API's own) that are
/// older than a session may live, so abandoned parts do not fill the store. Standard S3 calls only
/// (ListMultipartUploads, AbortMultipartUpload): a lifecycle rule `AbortIncompleteMultipartUpload` does the
/// same on stores that have one. Looks every tenth of the expiry (1 s to 10 min).
public struct UploadJanitor: Service {
    let s3: S3Client
    let bucket: String
    let prefix: String
    let expiry: Duration
    let logger: Logger

    var interval: Duration { min(.seconds(600), max(.seconds(1), expiry / 10)) }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                _ = await sweep(now: Date())
                try? await Task.sleep(for: interval)
            }
        }
    }

    /// Aborts the uploads initiated before `now - expiry`; returns how many it aborted.
    func sweep(now: Date) async -> Int {
        let seconds = Double(expiry.components.seconds) + Double(expiry.components.attoseconds) / 1e18
        let cutoff = now.addingTimeInterval(-seconds)
        var aborted = 0
        do {
            for upload in try await s3.listAllMultipartUploads(bucket: bucket, prefix: prefix) {
                guard let initiated = upload.initiated, initiated < cutoff else { continue }
                do {
                    try await s3.abortMultipartUpload(bucket: bucket, key: upload.key, uploadId: upload.uploadId)
                    aborted += 1
                    logger.info(
                        "expired upload session aborted",
                        metadata: [
                            "cinescale.key": .string(upload.key),
                            "cinescale.initiated": .string(ISO8601.string(initiated)),
                        ])
                } catch let error as S3Error where error.isNoSuchUpload {
                    continue  // completed or aborted meanwhile
                }
            }
        } catch {
            logger.warning(
                "expired upload sessions cannot be swept", metadata: ["cinescale.error": .string("\(error)")])
        }
        return aborted
    }
}
