"""Who may reach the broker and what each party may do there: the PKI commands and the ACLs (docs/security.md)."""
