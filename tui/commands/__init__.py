"""`ftwizard` commands that open a UI: the same shape as core's (`add_arguments(parser)`,
`run(args) -> exit code`), registered in `ftwizard.tui.cli.TUI_COMMANDS`."""
