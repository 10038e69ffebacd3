"""Onboarding: CRM -> billing -> provisioning -> welcome email, with a human approving the email."""
