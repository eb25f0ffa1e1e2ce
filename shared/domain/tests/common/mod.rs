//! What the upload tests share: a good transaction item and the contract's
//! field names.

// Every test binary compiles its own copy of this module and uses part of it.
#![allow(dead_code)]

/// A transaction item that parses, with the contract example's values.
pub const GOOD: &str = r#"{"PickupGroupId":61499281,"SerialNumber":"UT07761","RetrievedOn":"2018-12-07T08:26:37.437-06:00","TransactionDateTime":"2018-12-07T11:54:27-06:00","UserName":"JOSE CHAVEZ","TransactionType":"CashIn","Amount":5560.0,"Denominations":[{"UnitValue":20.0000,"Count":53,"Currency":"USD"},{"UnitValue":100.0000,"Count":45,"Currency":"USD"}],"Register":"0","ChangePurchaseNumber":null,"DepositReferenceNumber":null}"#;

/// The fields every transaction item must carry, in the contract's order.
pub const REQUIRED_FIELDS: [&str; 7] = [
    "PickupGroupId",
    "SerialNumber",
    "RetrievedOn",
    "TransactionDateTime",
    "UserName",
    "TransactionType",
    "Amount",
];

/// The contract's other field names: a transaction's optional fields and a
/// denomination's.
pub const OTHER_FIELDS: [&str; 11] = [
    "Denominations",
    "Register",
    "ChangePurchaseNumber",
    "DepositReferenceNumber",
    "TubeCount",
    "TubeColumn",
    "DoorName",
    "SequenceNumber",
    "UnitValue",
    "Count",
    "Currency",
];
