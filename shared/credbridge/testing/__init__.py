"""The credential-helper protocol contract as a kit: `checks` holds what any docker-credential-*
program must do; `contract.HelperContract` runs it under pytest, `credbridge check-helper` in a
shell."""
