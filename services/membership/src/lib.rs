//! Membership: who holds which role in which account, the user directory, and Authorize.
