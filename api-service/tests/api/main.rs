//! The API's validation against a wiremock identity provider serving discovery and JWKS, with
//! tokens minted by the tests with their own keys.

mod helpers;
mod keys;
mod validator;
