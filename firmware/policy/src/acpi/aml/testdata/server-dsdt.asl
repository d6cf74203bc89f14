/*
 * A server-like DSDT for the AML reader's tests (../tests.rs): four host bridges on segment 0
 * and one on segment 1 below a socket device holding the _PXM it inherits. Compiled with
 * `iasl -p server-dsdt server-dsdt.asl`; the .aml is committed so the tests need no iasl.
 *
 *   PCI0  _PXM method returning a constant            -> Declared(0)
 *   PCI1  _PXM method that computes its value          -> Computed
 *   PCI2  no _PXM here; server-ssdt.asl adds Name(_PXM, 3) -> Declared(3)
 *   PCI3  CXL host bridge (ACPI0016, _CID package), _PXM Return(One) -> Declared(1)
 *   SCK1.PC10  no _PXM; its parent SCK1 has Name(_PXM, 2) -> Inherited
 *
 * Between them, the declarations the reader steps over without looking inside.
 */
DefinitionBlock ("", "DSDT", 2, "NUMAVI", "SERVER", 0x00000001)
{
    Name (PXMS, One)
    Name (_S5, Package (0x04) { 0x05, Zero, Zero, Zero })
    Mutex (GLCK, 0x00)
    Event (GEVT)
    OperationRegion (GNVS, SystemMemory, 0x7FF00000, 0x0100)
    Field (GNVS, AnyAcc, Lock, Preserve)
    {
        OSYS,   16,
        NPXM,   8,
        IDX0,   8,
        DAT0,   8,
        BNK0,   8
    }
    IndexField (IDX0, DAT0, ByteAcc, NoLock, Preserve)
    {
        IREG,   8
    }
    BankField (GNVS, BNK0, 0x01, ByteAcc, NoLock, Preserve)
    {
        BREG,   8
    }
    Name (BUF0, Buffer (0x08) { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 })
    CreateDWordField (BUF0, 0x00, BDW0)
    CreateWordField (BUF0, 0x04, BW00)
    CreateByteField (BUF0, 0x06, BB00)
    CreateBitField (BUF0, 0x38, BBT0)
    CreateField (BUF0, 0x00, 0x04, BFL0)
    Alias (PXMS, PXMA)
    DataTableRegion (DREG, "FACP", "", "")
    Name (IOBA, 0x0400)
    Name (IOSH, 0x04)
    /* Operands iasl cannot fold: Add and ShiftLeft stay in the AML. */
    OperationRegion (CALC, SystemIO, Add (IOBA, 0x10), ShiftLeft (One, IOSH))
    Method (MPXM, 1, NotSerialized)
    {
        Return (Arg0)
    }

    Scope (\_PR)
    {
        Processor (CPU0, 0x00, 0x00000410, 0x06) {}
    }

    PowerResource (PWR0, 0x00, 0x0000)
    {
        Method (_STA, 0, NotSerialized) { Return (One) }
        Method (_ON, 0, NotSerialized) {}
        Method (_OFF, 0, NotSerialized) {}
    }

    ThermalZone (TZ00)
    {
        Method (_TMP, 0, NotSerialized) { Return (0x0BB8) }
    }

    Scope (\_SB)
    {
        Device (PCI0)
        {
            Name (_HID, EisaId ("PNP0A08"))
            Name (_CID, EisaId ("PNP0A03"))
            Name (_UID, Zero)
            Name (_SEG, Zero)
            Name (_BBN, Zero)
            Method (_PXM, 0, NotSerialized)
            {
                Return (Zero)
            }
            OperationRegion (HBUS, PCI_Config, 0x40, 0x10)
            Field (HBUS, DWordAcc, NoLock, Preserve)
            {
                BUSN,   8
            }
            Name (_CRS, ResourceTemplate ()
            {
                WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
                    0x0000, 0x0000, 0x003F, 0x0000, 0x0040,,,)
                IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08,)
            })
            Device (RP01)
            {
                Name (_ADR, 0x00010000)
                Method (_PRW, 0, NotSerialized) { Return (Package (0x02) { 0x09, 0x04 }) }
            }
        }

        Device (PCI1)
        {
            Name (_HID, EisaId ("PNP0A08"))
            Name (_CID, EisaId ("PNP0A03"))
            Name (_UID, One)
            Name (_BBN, 0x40)
            Method (_PXM, 0, NotSerialized)
            {
                If (PXMS)
                {
                    Return (One)
                }
                Return (Zero)
            }
            Name (_CRS, ResourceTemplate ()
            {
                WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
                    0x0000, 0x0040, 0x007F, 0x0000, 0x0040,,,)
            })
        }

        Device (PCI2)
        {
            Name (_HID, EisaId ("PNP0A08"))
            Name (_CID, EisaId ("PNP0A03"))
            Name (_UID, 0x02)
            Name (_BBN, 0x80)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
        }

        Device (PCI3)
        {
            Name (_HID, "ACPI0016")
            Name (_CID, Package (0x02) { EisaId ("PNP0A08"), EisaId ("PNP0A03") })
            Name (_UID, 0x03)
            Name (_BBN, 0xC0)
            Method (_PXM, 0, NotSerialized)
            {
                Return (One)
            }
        }

        Device (SCK1)
        {
            Name (_HID, "ACPI0004")
            Name (_UID, One)
            Name (_PXM, 0x02)
            Device (PC10)
            {
                Name (_HID, EisaId ("PNP0A08"))
                Name (_CID, EisaId ("PNP0A03"))
                Name (_UID, 0x10)
                Name (_SEG, One)
                Name (_BBN, Zero)
                Name (_CRS, ResourceTemplate ()
                {
                    WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
                        0x0000, 0x0000, 0x00FF, 0x0000, 0x0100,,,)
                })
            }
        }
    }
}
