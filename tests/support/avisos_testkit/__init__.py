"""Test support shared by every Avisos test suite: isolated backing services, free ports,
service processes, and the local stand-ins of external providers (SMTP, Twilio, Web Push).

Nothing here is imported by the services themselves."""
