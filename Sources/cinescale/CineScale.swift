import ArgumentParser

@main
struct CineScale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cinescale",
        abstract: "A self-hostable video pipeline: embedded S3 store, function gateway, media functions.",
        subcommands: [
            DemoCommand.self, DevCommand.self, UploadCommand.self, StoreCommand.self, GatewayCommand.self,
            InvocationsCommand.self, KeysCommand.self, PresignCommand.self,
        ]
    )
}
