//! Scalar reference implementations: the plain loops every optimised kernel is tested against.
