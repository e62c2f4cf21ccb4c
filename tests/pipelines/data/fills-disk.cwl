cwlVersion: v1.2
class: Workflow
label: Fill the disk
doc: A step `fill` that writes `mib` MiB into its output, after a step `small`; for the disk-full test.
inputs:
  mib: int
outputs:
  filled:
    type: File
    outputSource: fill/out
steps:
  small:
    run: echo.cwl
    in: {text: {default: small}}
    out: [out]
  fill:
    run:
      class: CommandLineTool
      inputs:
        first: File
        mib:
          type: int
          inputBinding: {position: 1, prefix: count=, separate: false}
      baseCommand: [dd, if=/dev/zero, of=filled.bin, bs=1M]
      outputs:
        out: {type: File, outputBinding: {glob: filled.bin}}
    in: {first: small/out, mib: mib}
    out: [out]
