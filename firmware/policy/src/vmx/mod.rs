//! Intel VMX facts the backend needs, as pure logic tested on the host: VMCS field encodings
//! ([`fields`]), VM-execution/exit/entry controls computed from the capability MSRs
//! ([`controls`]), and what EPT, VPID and the fixed CR0/CR4 bits allow ([`capabilities`]).
//! Intel SDM vol. 3C chapters 23–29 and appendices A and B.

pub mod capabilities;
pub mod controls;
pub mod fields;
