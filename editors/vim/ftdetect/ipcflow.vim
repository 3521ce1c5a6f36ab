" ipcflow scripts: *.ipcflow, and files whose first line runs ipcflow
" (#!/usr/bin/env ipcflow, #!/usr/bin/env -S ipcflow run ...).
autocmd BufNewFile,BufRead *.ipcflow setfiletype ipcflow
autocmd BufNewFile,BufRead * if getline(1) =~# '^#!.*\<ipcflow\>' | setfiletype ipcflow | endif
