cwlVersion: v1.2
class: Workflow
doc: >
  A step `greedy` that holds `mib` MiB of memory (touching every page), after a step `small`
  that holds almost none; for the memory limit's test.
inputs:
  mib: int
outputs:
  held:
    type: File
    outputSource: greedy/out
steps:
  small:
    run: echo.cwl
    in: {text: {default: small}}
    out: [out]
  greedy:
    run:
      class: CommandLineTool
      inputs:
        first: File
        mib:
          type: int
          inputBinding: {position: 1}
      baseCommand:
        - python3
        - -c
        - "import sys; held = bytearray(int(sys.argv[1]) * 2**20); print(len(held))"
      stdout: held.txt
      outputs:
        out: {type: stdout}
    in: {first: small/out, mib: mib}
    out: [out]
